//! Twilio Programmable Messaging: the inbound SMS and status webhooks, starting with proof that
//! a request came from Twilio.

pub mod signature;
