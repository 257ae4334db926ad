//! Why a decision failed: the error of the pure deciders (inbound, start, timer, escalation,
//! digest, link, shift offer) that the store runs inside its transaction. An `Err` rolls the
//! transaction back; the store hands it on as `StoreError::Decide`, and the runner matches on
//! its variants (a missing flow revision is loaded and the decision tried again), never on text.

use std::error::Error as StdError;

/// An error a decider returns.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The conversation runs a flow revision this process has not loaded yet (another instance
    /// registered it, or the flow file changed since start-up). The runner loads it from the
    /// store and decides again.
    #[error("flow revision not loaded: {0}")]
    MissingRevision(i64),
    /// A conversation's stored engine state does not read back.
    #[error("conversation {conversation} has unreadable state: {source}")]
    UnreadableState {
        conversation: i64,
        #[source]
        source: serde_json::Error,
    },
    /// A message template failed to render (`render::RenderError`, boxed: the vocabulary
    /// sits below the templates).
    #[error(transparent)]
    Template(Box<dyn StdError + Send + Sync>),
    /// The flow engine refused to go on (`flow::engine::EngineError`, boxed likewise).
    #[error(transparent)]
    Flow(Box<dyn StdError + Send + Sync>),
    /// A decision that cannot be made as the caller asked it (a program's own rule, or a
    /// snapshot without what the decision needs).
    #[error("{0}")]
    Refused(String),
}
