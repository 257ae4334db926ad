//! Small types parsed at the edge and valid by construction, so the rest of carebot never
//! re-checks what a transport or an import already accepted.

pub mod phone;

pub use phone::{Phone, PhoneError};
