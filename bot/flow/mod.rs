//! The flow engine: flow files parsed and checked (`definition`), replies matched to answers
//! (`answer`), and the pure state machine that runs a conversation (`engine`). Nothing here
//! does IO or reads a clock: no tokio, sqlx, axum or teloxide.

pub mod answer;
pub mod definition;
pub mod engine;

pub use definition::{Flow, FlowError, Problem, Severity};
pub use engine::{Event, Input, Outcome, State, Transition};
