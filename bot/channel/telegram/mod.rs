//! Telegram through teloxide: verify a webhook's secret, normalize an `Update` into a
//! [`TelegramInbound`] for the runner, and the client that answers taps and edits messages.
//! Updates arrive by webhook or by long polling, both in `web::telegram`, which hands them to
//! the runner.
//!
//! Only private chats count: carebot talks to one person at a time, and a group chat must never
//! be linked to a caregiver.

pub mod client;
pub mod markup;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use teloxide::types::{Message, Update, UpdateKind, User};

use crate::domain::{Address, Channel, Lang, Phone, PhoneError};
use crate::model::{TelegramInbound, TelegramInput};

pub use client::TelegramClient;

/// Whether a webhook request carries the secret registered with `setWebhook`. Compared in
/// constant time, over SHA-256 digests so that not even the secret's length leaks.
pub fn secret_matches(expected: &str, given: Option<&[u8]>) -> bool {
    let Some(given) = given else {
        return false;
    };
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given);
    !expected.is_empty() && bool::from(a.ct_eq(&b))
}

/// A phone number from a Telegram contact: always international, sometimes without the `+`.
pub fn contact_phone(raw: &str) -> Result<Phone, PhoneError> {
    let raw = raw.trim();
    if raw.starts_with('+') {
        Phone::parse(raw)
    } else {
        Phone::parse(&format!("+{raw}"))
    }
}

/// What a tap needs on screen once the runner has decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapScreen {
    pub callback_id: String,
    /// The chat, the message and its text, when Telegram still shows it to the bot.
    pub message: Option<(i64, i32, String)>,
    /// The label of the button tapped.
    pub label: Option<String>,
}

/// An update, normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    Inbound(TelegramInbound, Option<TapScreen>),
    /// Nothing carebot acts on (a group chat, an edit, another bot, an unknown kind): acked.
    Ignored(&'static str),
}

/// Reads an update. `bot_id` makes the inbound's id unique across bots; `now` is when it came.
pub fn normalize(update: &Update, bot_id: &str, now: DateTime<Utc>) -> Normalized {
    let external_id = format!("{bot_id}:{}", update.id.0);
    let inbound = |chat: i64, from: Option<&User>, input| TelegramInbound {
        chat: Address::new(Channel::Telegram, chat.to_string()),
        external_id: external_id.clone(),
        received_at: now,
        language: from.and_then(|u| language(u.language_code.as_deref())),
        input,
    };
    match &update.kind {
        UpdateKind::Message(message) => {
            if !message.chat.is_private() {
                return Normalized::Ignored("not a private chat");
            }
            let from = message.from.as_ref();
            if from.is_some_and(|u| u.is_bot) {
                return Normalized::Ignored("from a bot");
            }
            let Some(input) = read_message(message) else {
                return Normalized::Ignored("a service message");
            };
            Normalized::Inbound(inbound(message.chat.id.0, from, input), None)
        }
        UpdateKind::CallbackQuery(query) => {
            let Some(shown) = &query.message else {
                return Normalized::Ignored("a tap on an inline message");
            };
            if !shown.chat().is_private() {
                return Normalized::Ignored("not a private chat");
            }
            let data = query.data.clone().unwrap_or_default();
            let regular = shown.regular_message();
            let screen = TapScreen {
                callback_id: query.id.0.clone(),
                message: regular.map(|m| {
                    (
                        m.chat.id.0,
                        m.id.0,
                        m.text().unwrap_or_default().to_owned(),
                    )
                }),
                label: regular
                    .and_then(Message::reply_markup)
                    .and_then(|k| {
                        k.inline_keyboard.iter().flatten().find(|b| {
                            matches!(&b.kind,
                                teloxide::types::InlineKeyboardButtonKind::CallbackData(d) if *d == data)
                        })
                    })
                    .map(|b| b.text.clone()),
            };
            Normalized::Inbound(
                inbound(
                    shown.chat().id.0,
                    Some(&query.from),
                    TelegramInput::Tap(data),
                ),
                Some(screen),
            )
        }
        UpdateKind::MyChatMember(change) => {
            if change.chat.is_private() && change.new_chat_member.is_banned() {
                Normalized::Inbound(
                    inbound(change.chat.id.0, Some(&change.from), TelegramInput::Blocked),
                    None,
                )
            } else {
                Normalized::Ignored("a membership change")
            }
        }
        UpdateKind::Error(_) => Normalized::Ignored("an update teloxide cannot read"),
        _ => Normalized::Ignored("an update kind carebot does not use"),
    }
}

fn read_message(message: &Message) -> Option<TelegramInput> {
    if let Some(text) = message.text() {
        return Some(TelegramInput::Text(text.to_owned()));
    }
    if let Some(contact) = message.contact() {
        let own = match (contact.user_id, &message.from) {
            (Some(id), Some(from)) => id == from.id,
            _ => false,
        };
        return Some(TelegramInput::Contact {
            phone: contact_phone(&contact.phone_number).ok(),
            own,
        });
    }
    let kind = if message.photo().is_some() {
        "photo"
    } else if message.sticker().is_some() {
        "sticker"
    } else if message.voice().is_some() {
        "voice message"
    } else if message.video().is_some() || message.video_note().is_some() {
        "video"
    } else if message.document().is_some() {
        "file"
    } else if message.location().is_some() {
        "location"
    } else if matches!(message.kind, teloxide::types::MessageKind::Common(_)) {
        "message"
    } else {
        return None;
    };
    Some(TelegramInput::Unsupported(kind.to_owned()))
}

/// The language of a Telegram app (`es`, `es-419`, `en-US`), when carebot speaks it.
fn language(code: Option<&str>) -> Option<Lang> {
    code?.split(['-', '_']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the webhook reads one: from text (teloxide cannot read an update from a `Value`).
    fn update(json: serde_json::Value) -> Update {
        serde_json::from_str(&json.to_string()).unwrap()
    }

    fn user(id: i64) -> serde_json::Value {
        serde_json::json!({"id": id, "is_bot": false, "first_name": "Maria", "language_code": "es-419"})
    }

    fn private(id: i64) -> serde_json::Value {
        serde_json::json!({"id": id, "first_name": "Maria", "type": "private"})
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000, 0).unwrap()
    }

    #[test]
    fn the_secret_is_compared_whole() {
        assert!(secret_matches("s3cret_token-1", Some(b"s3cret_token-1")));
        for wrong in [
            &b"s3cret_token-2"[..],
            b"s3cret_token-",
            b"",
            b"s3cret_token-11",
        ] {
            assert!(!secret_matches("s3cret_token-1", Some(wrong)));
        }
        assert!(!secret_matches("s3cret_token-1", None));
        assert!(!secret_matches("", Some(b"")));
    }

    #[test]
    fn contact_numbers_come_with_or_without_a_plus() {
        for raw in ["13125550123", "+13125550123", " 13125550123 "] {
            assert_eq!(contact_phone(raw).unwrap().as_str(), "+13125550123");
        }
        // Without the plus a Telegram number is international, never a US-dialled one.
        assert_eq!(
            contact_phone("447700900123").unwrap().as_str(),
            "+447700900123"
        );
        assert!(contact_phone("12").is_err());
    }

    #[test]
    fn a_text_message_becomes_an_inbound_with_a_unique_id() {
        let u = update(serde_json::json!({"update_id": 77, "message": {
            "message_id": 5, "from": user(42), "chat": private(42), "date": 1, "text": "4"}}));
        let n = normalize(&u, "999", at());
        let Normalized::Inbound(i, None) = n else {
            panic!("{n:?} from {u:?}")
        };
        assert_eq!(i.chat, Address::new(Channel::Telegram, "42"));
        assert_eq!(i.external_id, "999:77");
        assert_eq!(i.language, Some(Lang::Es));
        assert_eq!(i.input, TelegramInput::Text("4".into()));
    }

    #[test]
    fn a_contact_is_own_only_when_its_user_is_the_sender() {
        for (user_id, own) in [(Some(42), true), (Some(43), false), (None, false)] {
            let mut contact = serde_json::json!({"phone_number": "13125550123", "first_name": "M"});
            if let Some(id) = user_id {
                contact["user_id"] = id.into();
            }
            let u = update(serde_json::json!({"update_id": 1, "message": {
                "message_id": 5, "from": user(42), "chat": private(42), "date": 1,
                "contact": contact}}));
            let Normalized::Inbound(i, _) = normalize(&u, "9", at()) else {
                panic!()
            };
            assert_eq!(
                i.input,
                TelegramInput::Contact {
                    phone: Some(Phone::parse("+13125550123").unwrap()),
                    own
                }
            );
        }
    }

    #[test]
    fn a_tap_carries_its_data_and_what_to_update_on_screen() {
        let u = update(serde_json::json!({"update_id": 2, "callback_query": {
            "id": "cb1", "from": user(42), "chat_instance": "x", "data": "q:7:abcd1234:2",
            "message": {"message_id": 9, "from": {"id": 999, "is_bot": true, "first_name": "Bot"},
                "chat": private(42), "date": 1, "text": "How was your week?",
                "reply_markup": {"inline_keyboard": [[
                    {"text": "1", "callback_data": "q:7:abcd1234:1"},
                    {"text": "2", "callback_data": "q:7:abcd1234:2"}]]}}}}));
        let Normalized::Inbound(i, Some(screen)) = normalize(&u, "9", at()) else {
            panic!()
        };
        assert_eq!(i.input, TelegramInput::Tap("q:7:abcd1234:2".into()));
        assert_eq!(
            screen,
            TapScreen {
                callback_id: "cb1".into(),
                message: Some((42, 9, "How was your week?".into())),
                label: Some("2".into()),
            }
        );
    }

    #[test]
    fn groups_edits_and_bots_are_ignored_and_a_block_is_noticed() {
        let group = update(serde_json::json!({"update_id": 3, "message": {
            "message_id": 5, "from": user(42), "date": 1, "text": "/start",
            "chat": {"id": -100, "title": "Team", "type": "group"}}}));
        assert!(matches!(
            normalize(&group, "9", at()),
            Normalized::Ignored(_)
        ));
        let edit = update(serde_json::json!({"update_id": 4, "edited_message": {
            "message_id": 5, "from": user(42), "chat": private(42), "date": 1, "text": "5"}}));
        assert!(matches!(
            normalize(&edit, "9", at()),
            Normalized::Ignored(_)
        ));
        let blocked = update(serde_json::json!({"update_id": 5, "my_chat_member": {
            "chat": private(42), "from": user(42), "date": 1,
            "old_chat_member": {"user": {"id": 999, "is_bot": true, "first_name": "Bot"}, "status": "member"},
            "new_chat_member": {"user": {"id": 999, "is_bot": true, "first_name": "Bot"}, "status": "kicked", "until_date": 0}}}));
        let Normalized::Inbound(i, _) = normalize(&blocked, "9", at()) else {
            panic!()
        };
        assert_eq!(i.input, TelegramInput::Blocked);
    }

    #[test]
    fn a_photo_is_kept_as_unsupported() {
        let u = update(serde_json::json!({"update_id": 6, "message": {
            "message_id": 5, "from": user(42), "chat": private(42), "date": 1,
            "photo": [{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}]}}));
        let Normalized::Inbound(i, _) = normalize(&u, "9", at()) else {
            panic!()
        };
        assert_eq!(i.input, TelegramInput::Unsupported("photo".into()));
    }
}
