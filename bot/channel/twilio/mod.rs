//! Twilio Programmable Messaging: the inbound SMS and status webhooks (verify the signature,
//! normalize, ack) and the REST client the dispatcher sends through. No flow logic here.

pub mod client;
pub mod signature;

use chrono::{DateTime, Utc};

use crate::domain::{Address, Channel, Phone};
use crate::model::{Inbound, OutboundStatus};

/// Why a webhook request was refused. Each maps to one HTTP status in `web`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing or invalid X-Twilio-Signature")]
    BadSignature,
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// Parses a form-encoded body into its pairs, keeping repeated names (signatures cover them).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|e| WebhookError::Malformed(format!("body is not form-encoded: {e}")))
}

/// Checks the signature of a webhook request: `url` is the full public URL Twilio posted to.
pub fn verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Result<(), WebhookError> {
    match signature {
        Some(sig) if signature::verify(auth_token, url, params, sig) => Ok(()),
        _ => Err(WebhookError::BadSignature),
    }
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Normalizes a verified inbound SMS webhook into an [`Inbound`].
pub fn inbound(
    params: &[(String, String)],
    received_at: DateTime<Utc>,
) -> Result<Inbound, WebhookError> {
    let sid = get(params, "MessageSid")
        .or_else(|| get(params, "SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WebhookError::Malformed("no MessageSid".into()))?;
    let from = get(params, "From")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WebhookError::Malformed("no From".into()))?;
    let from = Phone::parse(from)
        .map_err(|e| WebhookError::Malformed(format!("From is not a phone number: {e}")))?;
    Ok(Inbound {
        address: Address::new(Channel::Sms, from.as_str()),
        text: get(params, "Body").unwrap_or_default().to_owned(),
        external_id: sid.to_owned(),
        received_at,
    })
}

/// A delivery report from Twilio's status callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// carebot's own outbound id, which rides in the callback URL's query (`?id=…`), so a
    /// message whose sid was never stored (a crash right after Twilio accepted it) is matched.
    pub id: Option<i64>,
    /// The recipient, when Twilio says (a 21610 opts this address out).
    pub to: Option<Address>,
    pub message_sid: String,
    pub status: OutboundStatus,
    pub error_code: Option<String>,
}

/// Maps Twilio's message status values onto carebot's. `None` for statuses that say nothing
/// about an outbound message (inbound `receiving`/`received`).
pub fn map_status(s: &str) -> Option<OutboundStatus> {
    Some(match s {
        "queued" | "accepted" | "scheduled" | "sending" => OutboundStatus::Accepted,
        "sent" => OutboundStatus::Sent,
        "delivered" | "read" => OutboundStatus::Delivered,
        "undelivered" => OutboundStatus::Undelivered,
        "failed" | "canceled" => OutboundStatus::Failed,
        _ => return None,
    })
}

/// Normalizes a verified status callback: its form `params` and the `query` of the URL it was
/// posted to.
pub fn status_report(
    params: &[(String, String)],
    query: Option<&str>,
) -> Result<Option<StatusReport>, WebhookError> {
    let sid = get(params, "MessageSid")
        .or_else(|| get(params, "SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WebhookError::Malformed("no MessageSid".into()))?;
    let raw = get(params, "MessageStatus")
        .or_else(|| get(params, "SmsStatus"))
        .ok_or_else(|| WebhookError::Malformed("no MessageStatus".into()))?;
    let id = query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|q| q.into_iter().find(|(k, _)| k == "id"))
        .and_then(|(_, v)| v.parse::<i64>().ok());
    let to = get(params, "To")
        .filter(|s| !s.is_empty())
        .map(|to| Address::new(Channel::Sms, to));
    Ok(map_status(raw).map(|status| StatusReport {
        id,
        to,
        message_sid: sid.to_owned(),
        status,
        error_code: get(params, "ErrorCode")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn a_valid_inbound_sms_is_normalized() {
        let p = form(&[
            ("MessageSid", "SM1"),
            ("From", "+13125550123"),
            ("Body", " 4 "),
        ]);
        let i = inbound(&p, Utc::now()).unwrap();
        assert_eq!(i.address, Address::new(Channel::Sms, "+13125550123"));
        assert_eq!(i.text, " 4 ");
        assert_eq!(i.external_id, "SM1");
    }

    #[test]
    fn missing_fields_are_malformed() {
        for p in [
            form(&[("From", "+13125550123")]),
            form(&[("MessageSid", "SM1")]),
            form(&[("MessageSid", "SM1"), ("From", "not-a-number")]),
        ] {
            assert!(matches!(
                inbound(&p, Utc::now()),
                Err(WebhookError::Malformed(_))
            ));
        }
    }

    #[test]
    fn a_wrong_or_missing_signature_is_refused() {
        let p = form(&[("MessageSid", "SM1"), ("From", "+13125550123")]);
        let url = "https://bot.example.org/webhooks/twilio/sms";
        let good = signature::sign("token", url, &p);
        assert_eq!(verify("token", url, &p, Some(&good)), Ok(()));
        assert_eq!(
            verify("other", url, &p, Some(&good)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify("token", url, &p, None),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn statuses_map_and_inbound_ones_are_ignored() {
        let p = form(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]);
        let r = status_report(&p, Some("id=42")).unwrap().unwrap();
        assert_eq!(r.status, OutboundStatus::Undelivered);
        assert_eq!(r.error_code.as_deref(), Some("30003"));
        assert_eq!(r.id, Some(42));
        let p = form(&[("MessageSid", "SM1"), ("MessageStatus", "received")]);
        assert_eq!(status_report(&p, None).unwrap(), None);
    }
}
