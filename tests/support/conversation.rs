//! What the people of an end-to-end test saw, as one transcript for an insta snapshot: every
//! text a person sent (through `TestApp::post_sms`) and every text carebot queued for them,
//! in the order carebot handled them, one line each: `Maria → carebot: 4`,
//! `carebot → Dana: ALERT 1 (high): …`. Ids and times that differ from run to run stay out.

use std::sync::{Arc, Mutex};

use super::TestStore;

/// The texts people sent, each with the outbox position at which carebot read it.
#[derive(Debug, Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Texted>>>);

#[derive(Debug, Clone)]
struct Texted {
    /// The newest outbound message id when it was sent: what carebot queued before reading it.
    after: i64,
    sid: String,
    from: String,
    body: String,
}

impl Inbox {
    /// Notes a text carebot accepted; a retried provider id is the same text, noted once.
    pub fn note(&self, after: i64, sid: &str, from: &str, body: &str) {
        let mut texts = self.0.lock().unwrap();
        if texts.iter().all(|t| t.sid != sid) {
            texts.push(Texted {
                after,
                sid: sid.to_owned(),
                from: from.to_owned(),
                body: body.to_owned(),
            });
        }
    }
}

/// The newest outbound message id (0 before the first).
pub async fn last_outbound_id(db: &TestStore) -> i64 {
    super::rows(db, "SELECT COALESCE(MAX(id), 0) FROM outbound_messages")
        .await
        .first()
        .and_then(|r| r[0].as_deref()?.parse().ok())
        .unwrap_or(0)
}

/// The conversation between carebot and `people` (name, SMS number): what each of them texted
/// and what carebot queued for them, in order. A message carebot held back or the provider
/// refused says so.
pub async fn transcript(db: &TestStore, inbox: &Inbox, people: &[(&str, &str)]) -> String {
    let name_of = |address: &str| {
        people
            .iter()
            .find(|(_, phone)| *phone == address)
            .map(|(name, _)| *name)
    };
    // (position, line): a text sent after outbound message N sits between N and N + 1.
    let mut lines: Vec<((i64, u8), String)> = Vec::new();
    let rows = super::rows(
        db,
        "SELECT id, address, body, status FROM outbound_messages WHERE channel = 'sms' ORDER BY id",
    )
    .await;
    for row in rows {
        let [Some(id), Some(address), Some(body), Some(status)] = &row[..] else {
            continue;
        };
        let Some(name) = name_of(address) else {
            continue;
        };
        let note = match status.as_str() {
            "suppressed" => "  [not sent: opted out]",
            "failed" | "undelivered" => "  [refused by the provider]",
            _ => "",
        };
        lines.push((
            (id.parse().unwrap(), 0),
            format!("carebot → {name}: {}{note}", indent(body)),
        ));
    }
    for t in inbox.0.lock().unwrap().iter() {
        if let Some(name) = name_of(&t.from) {
            lines.push((
                (t.after, 1),
                format!("{name} → carebot: {}", indent(&t.body)),
            ));
        }
    }
    lines.sort_by_key(|(at, _)| *at);
    lines
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message of several lines, its continuation lines indented under the first; one with
/// space at either end in quotes, so the space shows.
fn indent(text: &str) -> String {
    if text.trim() != text {
        return format!("{text:?}");
    }
    text.replace('\n', "\n    ")
}
