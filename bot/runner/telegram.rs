//! Telegram in the runner: what an update means once its transport has verified and normalized
//! it. Linking a chat to the roster (a shared contact that is the sender's own, or a one-time
//! invite), `/start`, `/language`, taps on buttons, and a blocked bot; everything else (consent
//! words, answers) takes the same path as an SMS through [`Runner::decide_inbound`].
//!
//! Also the rules for a caregiver reachable on two channels: which confirmation a STOP gets,
//! what STOP ALL stops, and remembering the channel they last wrote on.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{PlanBuilder, RunError, Runner, person};
use crate::channel::telegram::markup::{self, Tap};
use crate::consent::{self, Keyword, Reading};
use crate::domain::{Address, Channel, Lang, Phone};
use crate::flow::engine::{Person, State};
use crate::model::{
    Caregiver, ConsentStatus, ConvRef, ConversationStatus, DecideError, Inbound, InboundOutcome,
    InviteState, LinkCandidate, LinkClaim, OutboundKind, Plan, Reach, Snapshot, Supervisor,
    TapVerdict, TelegramInbound, TelegramInput, TelegramOutcome, Write,
};
use crate::render::{CaregiverView, FlowView, MessageContext, SupervisorView};
use crate::store::Store;

/// What an update asks for, read from its input.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    /// `/start`, optionally with an invite code (`t.me/<bot>?start=CODE`).
    Start(Option<String>),
    /// `/language`, LANGUAGE, IDIOMA: ask; `/language es` or a language button: set.
    Language(Option<Lang>),
    Contact {
        phone: Option<Phone>,
        own: bool,
    },
    /// A tap on a question's button.
    Answer {
        conversation: i64,
        step_tag: String,
        reply: String,
    },
    /// Anything else, read as if typed: answers, consent words (`/stop` is STOP).
    Text(String),
    Blocked,
    Unsupported(String),
}

impl Command {
    fn read(input: &TelegramInput) -> Command {
        match input {
            TelegramInput::Contact { phone, own } => Command::Contact {
                phone: phone.clone(),
                own: *own,
            },
            TelegramInput::Blocked => Command::Blocked,
            TelegramInput::Unsupported(kind) => Command::Unsupported(kind.clone()),
            TelegramInput::Tap(data) => match markup::parse_callback(data) {
                Tap::Answer {
                    conversation,
                    step_tag,
                    reply,
                } => Command::Answer {
                    conversation,
                    step_tag,
                    reply,
                },
                Tap::Language(lang) => Command::Language(Some(lang)),
                Tap::Text(text) => Command::Text(text),
            },
            TelegramInput::Text(text) => Command::read_text(text),
        }
    }

    fn read_text(text: &str) -> Command {
        let trimmed = text.trim();
        let Some(command) = trimmed.strip_prefix('/') else {
            return match crate::text::squash(trimmed).as_str() {
                "language" | "idioma" | "lenguaje" => Command::Language(None),
                "start" => Command::Start(None),
                _ => Command::Text(text.to_owned()),
            };
        };
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, a)| (n, a.trim()));
        // `/stop@carebot_bot` is how clients write a command meant for one bot.
        let name = name.split('@').next().unwrap_or_default().to_lowercase();
        match name.as_str() {
            "start" if arg.is_empty() => Command::Start(None),
            "start" => Command::Start(Some(arg.to_owned())),
            "language" | "idioma" => Command::Language(arg.parse().ok()),
            _ => Command::Text(if arg.is_empty() {
                name
            } else {
                format!("{name} {arg}")
            }),
        }
    }

    /// The body kept in `inbound_messages`: what the person sent, without a shared phone
    /// number or an invite code (the database keeps only the code's hash).
    fn recorded(&self, input: &TelegramInput) -> String {
        match (self, input) {
            (Command::Start(Some(_)), _) => "/start (invite)".into(),
            (Command::Contact { .. }, _) => "[shared contact]".into(),
            (Command::Answer { reply, .. }, _) => reply.clone(),
            (Command::Language(Some(lang)), TelegramInput::Tap(_)) => format!("[language {lang}]"),
            (Command::Blocked, _) => "[blocked the bot]".into(),
            (Command::Unsupported(kind), _) => format!("[{kind}]"),
            (_, TelegramInput::Text(text) | TelegramInput::Tap(text)) => text.clone(),
            _ => String::new(),
        }
    }
}

/// The payload of a question's button (see `channel::telegram::markup`).
pub(super) fn question_payload(step: &str, reply: &str) -> String {
    markup::question(step, reply)
}

/// The confirmation of a STOP: on a channel where the caregiver is reachable on the other one
/// too, it says that the other goes on and how to stop everything.
pub(super) fn stop_template(snap: &Snapshot) -> &'static str {
    let reach = snap.caregiver.as_ref().map(|c| &c.reach);
    match snap.address.channel {
        Channel::Telegram if reach.is_some_and(|r| r.sms == ConsentStatus::OptedIn) => {
            "telegram/stop_sms_too"
        }
        Channel::Telegram => "telegram/stop",
        _ if reach.is_some_and(telegram_open) => "system/stop_telegram_too",
        _ => "system/stop",
    }
}

pub(super) fn help_template(channel: Channel) -> &'static str {
    match channel {
        Channel::Telegram => "telegram/help",
        _ => "system/help",
    }
}

/// The question asked when a message may mean stop. On Telegram it says "here", as the
/// confirmation of its STOP does: a STOP there stops that chat, not the caregiver's texts.
pub(super) fn confirm_template(channel: Channel) -> &'static str {
    match channel {
        Channel::Telegram => "telegram/stop_confirm",
        _ => "system/stop_confirm",
    }
}

fn telegram_open(reach: &Reach) -> bool {
    reach
        .telegram
        .as_ref()
        .is_some_and(|(_, consent)| *consent == ConsentStatus::OptedIn)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash under which an invite code is stored.
pub fn invite_code_hash(code: &str) -> String {
    sha256_hex(code.trim())
}

impl<S: Store> Runner<S> {
    /// Handles one Telegram update end to end. `Ok` means it is committed and any reply is
    /// queued; `Err` means nothing was recorded and the update may be delivered again.
    pub async fn handle_telegram(
        &self,
        update: &TelegramInbound,
    ) -> Result<TelegramOutcome, RunError> {
        let command = Command::read(&update.input);
        let inbound = Inbound {
            address: update.chat.clone(),
            text: command.recorded(&update.input),
            external_id: update.external_id.clone(),
            received_at: update.received_at,
        };
        let claim = match &command {
            Command::Contact {
                phone: Some(phone),
                own: true,
            } => Some(LinkClaim::Phone(phone.as_str().to_owned())),
            Command::Start(Some(code)) => Some(LinkClaim::Invite {
                code_sha256: invite_code_hash(code),
            }),
            _ => None,
        };
        if let Some(claim) = claim {
            let decide =
                |snap: &Snapshot, found: &LinkCandidate| self.decide_link(snap, found, update);
            let outcome = self.store.handle_link(&inbound, &claim, &decide).await?;
            return Ok(TelegramOutcome { outcome, tap: None });
        }
        // Outside the transaction: a chat's link to a supervisor changes only by linking.
        let supervisor = self.store.linked_supervisor(&update.chat).await?;
        let verdict = Mutex::new(None);
        let decide = |snap: &Snapshot| {
            *verdict.lock().expect("verdict poisoned") = None;
            self.decide_telegram(snap, &command, update, supervisor.as_ref(), &verdict)
        };
        let outcome = self
            .with_revisions(|| self.store.handle_inbound(&inbound, &decide))
            .await?;
        let tap = match (&update.input, outcome) {
            (TelegramInput::Tap(_), InboundOutcome::Processed) => Some(
                verdict
                    .into_inner()
                    .expect("verdict poisoned")
                    .unwrap_or(TapVerdict::Accepted),
            ),
            _ => None,
        };
        Ok(TelegramOutcome { outcome, tap })
    }

    /// A chat offers a phone number or an invite code: link it, or say politely why not.
    fn decide_link(
        &self,
        snap: &Snapshot,
        found: &LinkCandidate,
        update: &TelegramInbound,
    ) -> Result<Plan, DecideError> {
        let mut plan = PlanBuilder::new(self, snap, update.received_at);
        let lang = found
            .caregiver
            .as_ref()
            .map(|c| c.language)
            .or(update.language)
            .unwrap_or(Lang::En);
        let by_invite = found.invite.is_some();
        let invite = match found.invite {
            Some(InviteState::Valid(id)) => Some(id),
            Some(_) => {
                plan.say(lang, "telegram/invite_invalid", None, None)?;
                plan.share_contact_button(lang)?;
                return Ok(plan.finish());
            }
            None => None,
        };
        if found.caregiver.is_none() && found.supervisor.is_none() {
            plan.say(lang, "telegram/not_on_roster", None, None)?;
            plan.remove_keyboard();
            return Ok(plan.finish());
        }
        plan.push(Write::Link {
            caregiver_id: found.caregiver.as_ref().map(|c| c.id),
            supervisor_id: found.supervisor.as_ref().map(|s| s.id),
        });
        if let Some(id) = invite {
            plan.push(Write::UseInvite { id });
        }
        // Linking is the opt-in on this channel.
        if snap.consent != ConsentStatus::OptedIn {
            plan.push(Write::Consent {
                status: ConsentStatus::OptedIn,
                source: "telegram_link".into(),
                detail: if by_invite {
                    "opened a one-time invite link".into()
                } else {
                    "shared their own phone number".into()
                },
            });
        }
        if let Some(c) = &found.caregiver
            && c.reach.last != Some(Channel::Telegram)
        {
            plan.push(Write::CaregiverChannel {
                channel: Channel::Telegram,
            });
        }
        match (&found.caregiver, &found.supervisor) {
            (Some(c), _) => plan.say(lang, "telegram/linked", Some(c), None)?,
            (None, Some(s)) => plan.say(lang, "telegram/supervisor_linked", None, Some(s))?,
            (None, None) => unreachable!("checked above"),
        }
        plan.remove_keyboard();
        Ok(plan.finish())
    }

    // Long because it is one match over what a Telegram update can be (blocked, /start, a
    // shared contact, a language choice, a button tap, typed text), each arm a few lines.
    fn decide_telegram(
        &self,
        snap: &Snapshot,
        command: &Command,
        update: &TelegramInbound,
        supervisor: Option<&Supervisor>,
        verdict: &Mutex<Option<TapVerdict>>,
    ) -> Result<Plan, DecideError> {
        let now = update.received_at;
        let lang = snap
            .caregiver
            .as_ref()
            .map(|c| c.language)
            .or(update.language)
            .unwrap_or(Lang::En);
        let known = snap.caregiver.is_some() || supervisor.is_some();
        let as_typed = |text: &str| {
            self.decide_inbound(
                snap,
                &Inbound {
                    address: snap.address.clone(),
                    text: text.to_owned(),
                    external_id: String::new(),
                    received_at: now,
                },
            )
        };
        let mut plan = PlanBuilder::new(self, snap, now);
        if *command != Command::Blocked {
            // Anything they send here (a /start, a language) is writing on this channel.
            plan.note_channel();
        }
        match command {
            Command::Blocked => {
                if snap.consent != ConsentStatus::OptedOut {
                    plan.push(Write::Consent {
                        status: ConsentStatus::OptedOut,
                        source: "telegram".into(),
                        detail: "blocked the bot".into(),
                    });
                    plan.interrupt_here();
                }
            }
            Command::Unsupported(_) => {
                if snap.consent != ConsentStatus::OptedOut {
                    plan.say(lang, "telegram/text_only", snap.caregiver.as_ref(), None)?;
                }
            }
            Command::Start(_) => plan.start(lang, supervisor)?,
            Command::Contact { phone, own } => {
                if *own && phone.is_none() {
                    plan.say(lang, "telegram/not_on_roster", None, None)?;
                    plan.remove_keyboard();
                } else {
                    plan.say(lang, "telegram/not_own_contact", None, None)?;
                    plan.share_contact_button(lang)?;
                }
            }
            Command::Language(None) => {
                plan.say(
                    lang,
                    "telegram/language_prompt",
                    snap.caregiver.as_ref(),
                    None,
                )?;
                plan.attach_buttons(
                    Lang::ALL
                        .iter()
                        .map(|l| (language_name(*l).to_owned(), markup::language(*l)))
                        .collect(),
                );
            }
            Command::Language(Some(chosen)) => {
                plan.set_language(*chosen)?;
                if !known {
                    plan.say(*chosen, "telegram/welcome", None, None)?;
                    plan.share_contact_button(*chosen)?;
                }
            }
            Command::Answer {
                conversation,
                step_tag,
                reply,
            } => {
                let open = snap.consent != ConsentStatus::OptedOut
                    && snap
                        .conversation
                        .as_ref()
                        .filter(|c| c.id == *conversation)
                        .and_then(|c| serde_json::from_value::<State>(c.state.clone()).ok())
                        .is_some_and(|state| markup::step_tag(&state.step) == *step_tag);
                if !open {
                    let notice = plan.render(lang, "telegram/question_closed", None, None)?;
                    *verdict.lock().expect("verdict poisoned") =
                        Some(TapVerdict::Closed { notice });
                    return Ok(plan.finish());
                }
                return as_typed(reply);
            }
            Command::Text(text) => {
                if snap.caregiver.is_some() {
                    return as_typed(text);
                }
                // Not linked to a caregiver: consent words still work on the chat itself.
                // A plain request to stop too: no question can be waiting in such a chat.
                let reading = consent::read(text, false);
                if consent::stops_everything(text)
                    || matches!(
                        reading,
                        Reading::Keyword(Keyword::OptOut | Keyword::Help) | Reading::StopNow
                    )
                {
                    return as_typed(text);
                }
                if reading == Reading::Keyword(Keyword::OptIn) {
                    plan.start(lang, supervisor)?;
                } else if !snap.stranger_replied_today && snap.consent != ConsentStatus::OptedOut {
                    // Once a day, so a chat that keeps writing is not answered every time.
                    match supervisor {
                        Some(s) => plan.say(lang, "telegram/supervisor_linked", None, Some(s))?,
                        None => {
                            plan.say(lang, "telegram/welcome", None, None)?;
                            plan.share_contact_button(lang)?;
                        }
                    }
                    plan.push(Write::StrangerReplied {
                        day: now.date_naive(),
                    });
                }
            }
        }
        Ok(plan.finish())
    }
}

/// How each language is offered on its button: in itself.
fn language_name(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "English",
        Lang::Es => "Español",
    }
}

impl<S: Store> PlanBuilder<'_, S> {
    /// Remembers the channel the snapshot's caregiver just wrote on, when it changed. A
    /// caregiver who has only ever texted has no value stored, which means SMS: nothing to write.
    pub(super) fn note_channel(&mut self) {
        let Some(c) = &self.snap.caregiver else {
            return;
        };
        let channel = self.snap.address.channel;
        if channel != Channel::Console && c.reach.last.unwrap_or(Channel::Sms) != channel {
            self.push(Write::CaregiverChannel { channel });
        }
    }

    /// STOP ALL: opts out every channel of the caregiver, ends their conversation wherever it
    /// runs, and confirms once, here.
    pub(super) fn stop_everything(&mut self, text: &str, lang: Lang) -> Result<(), DecideError> {
        let snap = self.snap;
        let detail = text.trim().to_owned();
        if snap.consent != ConsentStatus::OptedOut {
            self.push(Write::Consent {
                status: ConsentStatus::OptedOut,
                source: "keyword".into(),
                detail: detail.clone(),
            });
        }
        let mut elsewhere = false;
        if let Some(c) = &snap.caregiver {
            let mut others = Vec::new();
            if snap.address.channel != Channel::Sms {
                others.push((Address::new(Channel::Sms, c.phone.clone()), c.reach.sms));
            }
            if let Some((chat, consent)) = &c.reach.telegram
                && snap.address.channel != Channel::Telegram
            {
                others.push((Address::new(Channel::Telegram, chat.clone()), *consent));
            }
            for (address, consent) in others {
                if consent == ConsentStatus::OptedOut {
                    continue;
                }
                elsewhere |= consent == ConsentStatus::OptedIn;
                self.push(Write::ConsentAt {
                    address,
                    status: ConsentStatus::OptedOut,
                    source: "keyword".into(),
                    detail: format!("{detail} (on {})", snap.address.channel),
                });
            }
        }
        if let Some(conv) = &snap.conversation {
            self.push(Write::UpdateConversation {
                conversation: ConvRef::Existing(conv.id),
                status: ConversationStatus::Interrupted,
                state: crate::runner::interrupted_state(&conv.state),
                wake_at: None,
            });
        }
        let template = if elsewhere {
            "system/stop_all"
        } else if snap.address.channel == Channel::Telegram {
            "telegram/stop"
        } else {
            "system/stop"
        };
        if snap.consent != ConsentStatus::OptedOut || elsewhere {
            self.system(lang, template, OutboundKind::Consent)?;
        }
        Ok(())
    }

    /// Ends the snapshot's conversation if it runs on this channel.
    fn interrupt_here(&mut self) {
        if let Some(conv) = self
            .snap
            .conversation
            .as_ref()
            .filter(|c| c.channel == self.snap.address.channel)
        {
            self.push(Write::UpdateConversation {
                conversation: ConvRef::Existing(conv.id),
                status: ConversationStatus::Interrupted,
                state: crate::runner::interrupted_state(&conv.state),
                wake_at: None,
            });
        }
    }

    /// `/start` (or START) without an invite: a linked chat is back on (or told it is
    /// connected); any other chat is asked to share its phone number.
    fn start(&mut self, lang: Lang, supervisor: Option<&Supervisor>) -> Result<(), DecideError> {
        let snap = self.snap;
        let was_out = snap.consent == ConsentStatus::OptedOut;
        let linked = snap.caregiver.is_some() || supervisor.is_some();
        // /start after STOP resumes, as START does; for a chat not linked yet it only undoes the
        // STOP (linking, not /start, is the opt-in).
        if was_out || (linked && snap.consent == ConsentStatus::Unknown) {
            self.push(Write::Consent {
                status: ConsentStatus::OptedIn,
                source: "keyword".into(),
                detail: "/start".into(),
            });
        }
        match (&snap.caregiver, supervisor) {
            (Some(_), _) | (None, Some(_)) if was_out => {
                self.system(lang, "system/start", OutboundKind::Consent)?
            }
            (Some(c), _) => self.say(lang, "telegram/linked", Some(c), None)?,
            (None, Some(s)) => self.say(lang, "telegram/supervisor_linked", None, Some(s))?,
            (None, None) => {
                self.say(lang, "telegram/welcome", None, None)?;
                self.share_contact_button(lang)?;
            }
        }
        Ok(())
    }

    /// `/language es` or a language button: the caregiver's messages from now on, their
    /// running conversation included (when its flow speaks that language).
    fn set_language(&mut self, chosen: Lang) -> Result<(), DecideError> {
        let snap = self.snap;
        let Some(c) = &snap.caregiver else {
            return Ok(());
        };
        self.push(Write::CaregiverLanguage { language: chosen });
        if let Some(conv) = &snap.conversation
            && let Ok(mut state) = serde_json::from_value::<State>(conv.state.clone())
            && let Ok(flow) = self.runner.flow_for(conv.flow_rev)
            && flow.languages.contains(&chosen)
            && state.lang != chosen
        {
            state.lang = chosen;
            self.push(Write::UpdateConversation {
                conversation: ConvRef::Existing(conv.id),
                status: ConversationStatus::Active,
                wake_at: state.wake_at(),
                state: serde_json::to_value(&state).expect("state serializes"),
            });
        }
        let mut c = c.clone();
        c.language = chosen;
        self.say(chosen, "telegram/language_set", Some(&c), None)
    }

    /// Renders a message for this chat: about `caregiver` when given (a chat being linked is
    /// not in the snapshot yet), addressed to `supervisor` when given.
    fn render(
        &self,
        lang: Lang,
        template: &str,
        caregiver: Option<&Caregiver>,
        supervisor: Option<&Supervisor>,
    ) -> Result<String, DecideError> {
        let caregiver = caregiver.or(self.snap.caregiver.as_ref());
        let who = caregiver.map(person).unwrap_or_else(|| Person {
            first_name: String::new(),
            language: lang,
            branch: String::new(),
            timezone: "UTC".into(),
            groups: vec![],
            fields: BTreeMap::new(),
            tags: vec![],
        });
        let supervisor_name = supervisor
            .map(|s| s.name.clone())
            .or_else(|| {
                caregiver
                    .and_then(|c| c.supervisor.as_ref())
                    .map(|s| s.name.clone())
            })
            .unwrap_or_default();
        let empty = BTreeMap::new();
        let ctx = MessageContext {
            caregiver: CaregiverView {
                person: &who,
                last_name: caregiver.map_or("", |c| c.last_name.as_str()),
            },
            agency: &self.runner.settings.agency,
            supervisor: SupervisorView {
                name: supervisor_name,
            },
            answers: &empty,
            vars: &empty,
            flow: FlowView {
                id: "system",
                name: "System",
            },
            escalation: None,
        };
        self.runner
            .catalog
            .templates
            .render(template, lang, &ctx)
            .map(|(text, _)| text)
            .map_err(DecideError::from)
    }

    /// Queues a reply to this chat.
    fn say(
        &mut self,
        lang: Lang,
        template: &str,
        caregiver: Option<&Caregiver>,
        supervisor: Option<&Supervisor>,
    ) -> Result<(), DecideError> {
        let body = self.render(lang, template, caregiver, supervisor)?;
        let caregiver_id = caregiver.or(self.snap.caregiver.as_ref()).map(|c| c.id);
        let address = self.snap.address.clone();
        self.queue(
            address,
            caregiver_id,
            None,
            OutboundKind::Reply,
            body,
            Vec::new(),
            self.now,
        );
        Ok(())
    }

    /// Gives the last queued message these buttons.
    fn attach_buttons(&mut self, buttons: Vec<(String, String)>) {
        if let Some(Write::Outbound(out)) = self.writes.last_mut() {
            out.buttons = buttons;
        }
    }

    /// Puts a "share my phone number" button under the last queued message.
    fn share_contact_button(&mut self, lang: Lang) -> Result<(), DecideError> {
        let label = self.render(lang, "telegram/share_button", None, None)?;
        self.attach_buttons(vec![(label, markup::SHARE_CONTACT.to_owned())]);
        Ok(())
    }

    /// Takes the contact request away with the last queued message.
    fn remove_keyboard(&mut self) {
        self.attach_buttons(vec![(String::new(), markup::REMOVE_KEYBOARD.to_owned())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_with_or_without_a_slash() {
        assert_eq!(Command::read_text("/start"), Command::Start(None));
        assert_eq!(Command::read_text("Start"), Command::Start(None));
        assert_eq!(
            Command::read_text("/start abc_DEF-123"),
            Command::Start(Some("abc_DEF-123".into()))
        );
        assert_eq!(Command::read_text("/stop"), Command::Text("stop".into()));
        assert_eq!(
            Command::read_text("/STOP@carebot_bot"),
            Command::Text("stop".into())
        );
        assert_eq!(Command::read_text("/help"), Command::Text("help".into()));
        assert_eq!(Command::read_text("/language"), Command::Language(None));
        assert_eq!(
            Command::read_text("/language es"),
            Command::Language(Some(Lang::Es))
        );
        assert_eq!(
            Command::read_text("/idioma español"),
            Command::Language(Some(Lang::Es))
        );
        assert_eq!(Command::read_text("Idioma"), Command::Language(None));
        assert_eq!(Command::read_text("4"), Command::Text("4".into()));
    }

    #[test]
    fn what_is_recorded_never_holds_a_phone_number_or_an_invite_code() {
        let input = TelegramInput::Text("/start SECRETCODE".into());
        let command = Command::read(&input);
        assert_eq!(command.recorded(&input), "/start (invite)");
        let input = TelegramInput::Contact {
            phone: Phone::parse("+13125550123").ok(),
            own: true,
        };
        assert_eq!(Command::read(&input).recorded(&input), "[shared contact]");
    }

    fn caregiver(reach: Reach) -> Caregiver {
        Caregiver {
            id: 1,
            external_id: "C1".into(),
            first_name: "Maria".into(),
            last_name: "Gonzalez".into(),
            phone: "+13125550123".into(),
            language: Lang::En,
            timezone: "America/Chicago".into(),
            branch: "north".into(),
            groups: vec![],
            consent_at: None,
            active: true,
            fields: BTreeMap::new(),
            tags: vec![],
            supervisor: None,
            reach,
        }
    }

    fn reach_of(
        sms: ConsentStatus,
        telegram: Option<ConsentStatus>,
        preferred: Option<Channel>,
        last: Option<Channel>,
    ) -> Channel {
        let c = caregiver(Reach {
            sms,
            telegram: telegram.map(|t| ("42".to_owned(), t)),
            preferred,
            last,
        });
        crate::model::reach(&c).channel
    }

    #[test]
    fn program_messages_go_where_the_caregiver_prefers_among_open_channels() {
        use Channel::{Sms, Telegram};
        use ConsentStatus::{OptedIn, OptedOut, Unknown};
        // Only SMS: SMS, whatever its consent (the start then says why it skipped).
        assert_eq!(reach_of(OptedIn, None, None, None), Sms);
        assert_eq!(reach_of(Unknown, None, Some(Telegram), None), Sms);
        // Both open: the preference, else the channel last written on, else SMS.
        assert_eq!(reach_of(OptedIn, Some(OptedIn), None, None), Sms);
        assert_eq!(
            reach_of(OptedIn, Some(OptedIn), None, Some(Telegram)),
            Telegram
        );
        assert_eq!(
            reach_of(OptedIn, Some(OptedIn), Some(Sms), Some(Telegram)),
            Sms
        );
        assert_eq!(
            reach_of(OptedIn, Some(OptedIn), Some(Telegram), Some(Sms)),
            Telegram
        );
        // One closed: the other, whatever the preference.
        assert_eq!(reach_of(OptedOut, Some(OptedIn), Some(Sms), None), Telegram);
        assert_eq!(reach_of(Unknown, Some(OptedIn), None, None), Telegram);
        assert_eq!(reach_of(OptedIn, Some(OptedOut), Some(Telegram), None), Sms);
        assert_eq!(
            reach_of(OptedOut, Some(OptedOut), None, Some(Telegram)),
            Sms
        );
    }

    #[test]
    fn a_stop_confirmation_names_the_channel_that_stays_open() {
        let snap = |channel: Channel, reach: Reach| Snapshot {
            address: Address::new(channel, "x"),
            consent: ConsentStatus::OptedIn,
            caregiver: Some(caregiver(reach)),
            conversation: None,
            stranger_replied_today: false,
            shifts: Vec::new(),
            desk: None,
        };
        let both = Reach {
            sms: ConsentStatus::OptedIn,
            telegram: Some(("42".into(), ConsentStatus::OptedIn)),
            preferred: None,
            last: None,
        };
        let sms_only = Reach {
            telegram: None,
            ..both.clone()
        };
        let telegram_only = Reach {
            sms: ConsentStatus::OptedOut,
            ..both.clone()
        };
        assert_eq!(
            stop_template(&snap(Channel::Sms, both.clone())),
            "system/stop_telegram_too"
        );
        assert_eq!(
            stop_template(&snap(Channel::Telegram, both)),
            "telegram/stop_sms_too"
        );
        assert_eq!(stop_template(&snap(Channel::Sms, sms_only)), "system/stop");
        assert_eq!(
            stop_template(&snap(Channel::Telegram, telegram_only)),
            "telegram/stop"
        );
    }

    #[test]
    fn invite_codes_are_stored_hashed() {
        let hash = invite_code_hash("abc");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, invite_code_hash(" abc "));
        assert_ne!(hash, invite_code_hash("abd"));
    }
}
