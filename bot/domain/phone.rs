//! Placeholder until the E.164 parser lands (helper branch `pure`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("not a phone number")]
    Invalid,
}

impl Phone {
    pub fn parse(input: &str) -> Result<Phone, PhoneError> {
        let digits: String = input.chars().filter(char::is_ascii_digit).collect();
        match digits.len() {
            10 => Ok(Phone(format!("+1{digits}"))),
            11 if digits.starts_with('1') => Ok(Phone(format!("+{digits}"))),
            _ => Err(PhoneError::Invalid),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn mask_address(raw: &str) -> String {
    let keep: String = raw
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("***{keep}")
}
