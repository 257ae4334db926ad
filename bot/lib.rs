//! carebot runs scripted SMS and Telegram conversations for home-care workers. The modules below
//! are listed in the order an inbound message meets them.

/// Transports: verify a provider's request (Twilio signatures), normalize it, ack it.
pub mod channel;

/// Types parsed at the edge and valid by construction: E.164 phone numbers.
pub mod domain;

/// Case and accent folding shared by every matcher of caregiver text.
pub mod text;

/// Consent keywords (STOP, START, HELP and their Spanish forms), handled before any flow.
pub mod consent;

/// What an outbound SMS costs: GSM-7 or UCS-2, and how many segments.
pub mod sms;
