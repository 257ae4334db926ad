//! Transports: each verifies what its provider sends, normalizes it into one inbound message and
//! acks; nothing flow-related happens here.

pub mod telegram;
pub mod twilio;
