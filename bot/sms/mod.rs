//! SMS as a medium: what a message costs to send (encoding and segments), shared by
//! `flows check` and the dispatcher.

pub mod segments;
