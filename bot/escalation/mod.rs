//! Escalations after they are raised: who an alert goes to (routing), what a supervisor's reply
//! does (ACK, CALL, NOTE, DONE), the follow-up clock that re-sends and raises an alert nobody
//! acknowledged, and the daily digest of open alerts.
//!
//! An escalation is raised in the transaction that records the answer causing it, due at once.
//! The follow-up clock ([`Runner::run_due_escalations`], right after that commit and on every
//! scheduler tick) routes it: it writes the chain (the caregiver's supervisor, then the branch's
//! contact, then program staff; each skipped when missing or opted out) and sends the alert to
//! the first level, with the escalation's id to reply with. If nobody acknowledges it within
//! its priority's window, the clock sends it again and on to the next level; at the last level
//! it is re-sent a bounded number of times, after which only the daily digest keeps it in view.
//!
//! Like the rest of the runner, every decision here is pure: a snapshot in, a plan out.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::phone::masked_error;
use crate::domain::{Address, Lang, Priority};
use crate::model::{
    ChainContact, Contact, Desk, DeskAlert, EscalationAction, EscalationSnapshot, EscalationState,
    EscalationStatus, Inbound, NewOutbound, OutboundKind, Plan, Snapshot, Write,
};
use crate::quiet_hours;
use crate::render::{Agency, MessageContext};
use crate::runner::Runner;
use crate::sms::segments;
use crate::store::Store;

/// How many times an alert nobody acknowledged is re-sent at the last level of its chain
/// before the follow-up clock stops (the daily digest keeps listing it).
pub const LAST_LEVEL_RESENDS: i64 = 2;

/// Templates for the messages supervisors get about alerts (the alerts themselves are flow
/// templates under `alerts/`). `flows check` renders each against [`sample_desk_view`].
pub const DESK_TEMPLATES: &[&str] = &[
    "supervisor/help",
    "supervisor/acknowledged",
    "supervisor/calling",
    "supervisor/noted",
    "supervisor/done",
    "supervisor/already",
    "supervisor/refused",
    "supervisor/reescalated",
    "supervisor/taken_up",
    "supervisor/digest",
];

// ---------------------------------------------------------------------------------------------
// Supervisor replies

/// What a supervisor can do to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Seen; I am on it.
    Ack,
    /// I will call the caregiver.
    Call,
    /// Add a note.
    Note,
    /// Resolved: close it.
    Done,
}

impl Command {
    fn action(self) -> EscalationAction {
        match self {
            Command::Ack => EscalationAction::Ack,
            Command::Call => EscalationAction::Call,
            Command::Note => EscalationAction::Note,
            Command::Done => EscalationAction::Done,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Command::Ack => "ACK",
            Command::Call => "CALL",
            Command::Note => "NOTE",
            Command::Done => "DONE",
        }
    }
}

/// A supervisor's text read as a reply to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorReply {
    pub command: Command,
    /// The alert's number; `None` when the text gave none.
    pub id: Option<i64>,
    /// What follows the number, as typed (a NOTE's text, or a word on DONE).
    pub text: String,
    /// The language of the command word, which the confirmation is sent in.
    pub lang: Lang,
}

/// Command words in their folded form (lowercase, no accents).
const COMMANDS: &[(&str, Command, Lang)] = &[
    ("ack", Command::Ack, Lang::En),
    ("ok", Command::Ack, Lang::En),
    ("okay", Command::Ack, Lang::En),
    ("seen", Command::Ack, Lang::En),
    ("acknowledged", Command::Ack, Lang::En),
    ("visto", Command::Ack, Lang::Es),
    ("recibido", Command::Ack, Lang::Es),
    ("enterado", Command::Ack, Lang::Es),
    ("enterada", Command::Ack, Lang::Es),
    ("call", Command::Call, Lang::En),
    ("calling", Command::Call, Lang::En),
    ("llamo", Command::Call, Lang::Es),
    ("llamar", Command::Call, Lang::Es),
    ("llamare", Command::Call, Lang::Es),
    ("llamando", Command::Call, Lang::Es),
    ("note", Command::Note, Lang::En),
    ("nota", Command::Note, Lang::Es),
    ("done", Command::Done, Lang::En),
    ("close", Command::Done, Lang::En),
    ("closed", Command::Done, Lang::En),
    ("resolved", Command::Done, Lang::En),
    ("listo", Command::Done, Lang::Es),
    ("lista", Command::Done, Lang::Es),
    ("hecho", Command::Done, Lang::Es),
    ("cerrar", Command::Done, Lang::Es),
    ("cerrado", Command::Done, Lang::Es),
    ("resuelto", Command::Done, Lang::Es),
];

/// Reads `ACK 14`, `ack #14.`, `Call 14`, `NOTE 14 called her, all fine`, `done 14`,
/// `LLAMARÉ 14`, `listo 14 ya hablamos`: a command word (any case, accents ignored), an optional
/// number, and the rest as typed. `None` when the first word is not a command.
pub fn parse_reply(text: &str) -> Option<SupervisorReply> {
    let text = text.trim();
    let word_end = text
        .char_indices()
        .find(|(_, c)| !c.is_alphabetic())
        .map_or(text.len(), |(i, _)| i);
    let word = crate::text::fold(&text[..word_end]);
    let &(_, command, lang) = COMMANDS.iter().find(|(w, _, _)| *w == word)?;
    let rest =
        text[word_end..].trim_start_matches(|c: char| c.is_whitespace() || "#:.,-".contains(c));
    let digits_end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(rest.len(), |(i, _)| i);
    let id = rest[..digits_end].parse::<i64>().ok();
    let rest =
        rest[digits_end..].trim_start_matches(|c: char| c.is_whitespace() || ":.,-".contains(c));
    let text = if rest.chars().any(char::is_alphanumeric) {
        rest.trim().to_owned()
    } else {
        String::new()
    };
    Some(SupervisorReply {
        command,
        id,
        text,
        lang,
    })
}

// ---------------------------------------------------------------------------------------------
// What supervisor messages render with

/// What the templates under `supervisor/` see.
#[derive(Debug, Clone, Serialize)]
pub struct DeskView<'a> {
    pub agency: &'a Agency,
    /// The supervisor the message goes to.
    pub supervisor: Name,
    /// The alert the message is about (a placeholder in help and digest messages).
    pub escalation: AlertView,
    /// The alert's text as first sent (for a re-escalation).
    pub alert: String,
    /// How long the alert waited for an acknowledgement, like "2h".
    pub window: String,
    /// A digest's alerts.
    pub alerts: Vec<AlertView>,
    /// The numbers of the alerts the supervisor can act on, like "14, 15" (empty when none).
    pub open: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Name {
    pub name: String,
}

/// An alert as supervisor messages show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub priority: String,
    /// "Maria G."
    pub caregiver: String,
    pub branch: String,
    pub reason: String,
    pub answer: String,
    /// open, acknowledged, calling or done.
    pub status: String,
    /// Who took it up (or, in a re-escalation, who did not).
    pub by: String,
    /// What was replied: ACK, CALL, NOTE or DONE.
    pub action: String,
    /// How long ago it was raised, like "3h" or "2d".
    pub age: String,
}

/// The view `flows check` renders supervisor templates with.
pub fn sample_desk_view(agency: &Agency) -> DeskView<'_> {
    let alert = AlertView {
        id: 14,
        priority: "high".into(),
        caregiver: "Maria G.".into(),
        branch: "Chicago North".into(),
        reason: "low week score".into(),
        answer: "1".into(),
        status: "acknowledged".into(),
        by: "Dana Smith".into(),
        action: "ACK".into(),
        age: "3h".into(),
    };
    DeskView {
        agency,
        supervisor: Name {
            name: "Dana Smith".into(),
        },
        alert: "ALERT 14 (high): Maria G., Chicago North, rated the work week \"1\" on a 1-5 scale. Reply ACK 14, CALL 14, or NOTE 14 <text>.".into(),
        window: "2h".into(),
        alerts: vec![
            alert.clone(),
            AlertView {
                id: 15,
                priority: "normal".into(),
                caregiver: "Ana L.".into(),
                status: "open".into(),
                age: "1d".into(),
                ..alert.clone()
            },
        ],
        open: "14, 15".into(),
        escalation: alert,
    }
}

/// "40m", "5h", "2d": an age or a window, short enough for a text.
pub fn short_duration(d: Duration) -> String {
    let minutes = d.num_minutes().max(0);
    if minutes < 60 {
        format!("{minutes}m")
    } else if minutes < 48 * 60 {
        format!("{}h", minutes / 60)
    } else {
        format!("{}d", minutes / (24 * 60))
    }
}

/// What an alert template renders with, kept on the escalation when it is raised: the
/// caregiver, their supervisor's name, answers, vars and flow as the flow saw them, plus the
/// caregiver's address, language and time zone for the message `when_taken_up`.
pub fn raise_context(ctx: &MessageContext<'_>, address: &Address, lang: Lang, tz: &str) -> Value {
    let mut value = serde_json::to_value(ctx).expect("a message context serializes");
    if let Some(map) = value.as_object_mut() {
        // The agency is filled in when the alert is rendered, as it is configured then.
        map.remove("agency");
        map.remove("escalation");
        map.insert("address".into(), json!(address));
        map.insert("lang".into(), json!(lang));
        map.insert("timezone".into(), json!(tz));
    }
    value
}

fn alert_view(
    alert: &EscalationState,
    caregiver: &str,
    branch: &str,
    now: DateTime<Utc>,
) -> AlertView {
    AlertView {
        id: alert.id,
        priority: alert.priority.as_str().to_owned(),
        caregiver: caregiver.to_owned(),
        branch: branch.to_owned(),
        reason: alert.reason.clone(),
        answer: alert.answer.clone(),
        status: alert.status.as_str().to_owned(),
        by: String::new(),
        action: String::new(),
        age: short_duration(now - alert.raised_at),
    }
}

/// The caregiver as an alert names them, read from the context kept at raise time.
fn caregiver_of(context: &Value) -> (String, String) {
    let c = &context["caregiver"];
    let first = c["first_name"].as_str().unwrap_or_default();
    let initial = c["last_name"]
        .as_str()
        .and_then(|l| l.chars().next())
        .map(|i| format!(" {i}."))
        .unwrap_or_default();
    (
        format!("{first}{initial}"),
        c["branch"].as_str().unwrap_or_default().to_owned(),
    )
}

fn outbound(
    address: Address,
    caregiver_id: Option<i64>,
    kind: OutboundKind,
    body: String,
    not_before: DateTime<Utc>,
) -> Write {
    let seg = segments::analyze(&body);
    Write::Outbound(NewOutbound {
        address,
        caregiver_id,
        conversation: None,
        kind,
        encoding: match seg.encoding {
            segments::Encoding::Gsm7 => "gsm7".into(),
            segments::Encoding::Ucs2 => "ucs2".into(),
        },
        segments: seg.segments,
        body,
        not_before,
        buttons: Vec::new(),
    })
}

fn event(
    id: i64,
    action: EscalationAction,
    supervisor_id: Option<i64>,
    level: i64,
    detail: impl Into<String>,
) -> Write {
    Write::EscalationEvent {
        id,
        action,
        supervisor_id,
        level,
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

impl<S: Store> Runner<S> {
    /// Routes every escalation whose follow-up clock is due at `now`: new ones get their first
    /// alert, unacknowledged ones are re-sent and raised. Returns how many were handled.
    pub async fn run_due_escalations(
        &self,
        now: DateTime<Utc>,
    ) -> Result<usize, crate::runner::RunError> {
        let named = self.settings.escalation.named();
        let mut handled = 0;
        loop {
            let due = self.store.due_escalations(now, 100).await?;
            let n = due.len();
            for id in due {
                let decide = |snap: &EscalationSnapshot| self.decide_escalation(snap, now);
                if self
                    .store
                    .handle_due_escalation(id, now, &named, &decide)
                    .await?
                {
                    handled += 1;
                }
            }
            if n < 100 {
                return Ok(handled);
            }
        }
    }

    /// Sends each supervisor with open alerts their digest, once a local day, from the
    /// configured time on, inside their window: the alerts that were open at that time.
    /// Returns how many supervisors were looked at.
    pub async fn send_digests(&self, now: DateTime<Utc>) -> Result<usize, crate::runner::RunError> {
        let candidates = self.store.digest_candidates(now).await?;
        for id in &candidates {
            let decide = |desk: &Desk| self.decide_digest(desk, now);
            self.store.handle_digest(*id, now, &decide).await?;
        }
        Ok(candidates.len())
    }

    /// When an alert to `contact` may go out: at once when it is high priority, otherwise at
    /// the start of the supervisor's window in their time zone.
    fn alert_time(
        &self,
        priority: Priority,
        contact: &Contact,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        if priority == Priority::High {
            now
        } else {
            self.settings
                .supervisor_window
                .next_allowed(now, quiet_hours::zone(&contact.timezone))
        }
    }

    /// The alert's text: its template rendered with what was kept at raise time and its id.
    /// Should the template no longer render (removed since), a plain alert still goes out.
    pub fn render_alert(&self, e: &EscalationState) -> String {
        if e.template.is_empty() {
            return e.message.clone();
        }
        let mut ctx = e.context.clone();
        if let Some(map) = ctx.as_object_mut() {
            map.insert("agency".into(), json!(self.settings.agency));
            map.insert(
                "escalation".into(),
                json!({
                    "id": e.id,
                    "priority": e.priority.as_str(),
                    "reason": e.reason,
                    "answer": e.answer,
                }),
            );
        }
        match self.catalog.templates.render(&e.template, Lang::En, &ctx) {
            Ok((text, _)) => text,
            Err(err) => {
                tracing::error!(escalation = e.id, error = %masked_error(&err), "alert template failed; sending a plain alert");
                let (name, branch) = caregiver_of(&e.context);
                format!(
                    "ALERT {id} ({priority}): {name}, {branch}: {reason}. \"{answer}\" Reply ACK {id}, CALL {id}, or NOTE {id} <text>.",
                    id = e.id,
                    priority = e.priority.as_str(),
                    reason = e.reason,
                    answer = e.answer,
                )
            }
        }
    }

    fn render_desk(
        &self,
        template: &str,
        lang: Lang,
        view: &DeskView<'_>,
    ) -> Result<String, String> {
        self.catalog
            .templates
            .render(template, lang, view)
            .map(|(text, _)| text)
            .map_err(|e| e.to_string())
    }

    fn desk_view(&self, to: &Contact) -> DeskView<'_> {
        let mut view = sample_desk_view(&self.settings.agency);
        view.supervisor = Name {
            name: to.name.clone(),
        };
        view.alert = String::new();
        view.window = String::new();
        view.alerts = Vec::new();
        view.open = String::new();
        view
    }

    /// The follow-up clock for one escalation: route it the first time, re-send and raise it
    /// when its window passed without an acknowledgement.
    pub(crate) fn decide_escalation(
        &self,
        snap: &EscalationSnapshot,
        now: DateTime<Utc>,
    ) -> Result<Plan, String> {
        let e = &snap.escalation;
        let mut writes = Vec::new();
        let mut update = e.update();
        let window = self.settings.escalation.window(e.priority);
        if e.status != EscalationStatus::Open {
            // Taken up since it was scheduled: the clock stops.
            update.due_at = None;
            writes.push(Write::UpdateEscalation(update));
            return Ok(Plan { writes });
        }

        if snap.chain.is_empty() {
            let levels = self.chain_for(snap);
            let message = self.render_alert(e);
            update.message = message.clone();
            let Some(first) = levels.first() else {
                tracing::error!(
                    escalation = e.id,
                    "no supervisor, branch contact or program staff to send the alert to; retrying after its window"
                );
                writes.push(event(
                    e.id,
                    EscalationAction::Unrouted,
                    None,
                    0,
                    "no supervisor, branch contact or program staff on record",
                ));
                update.due_at = Some(now + window);
                writes.push(Write::UpdateEscalation(update));
                return Ok(Plan { writes });
            };
            writes.push(Write::EscalationChain {
                id: e.id,
                levels: levels
                    .iter()
                    .map(|l| l.iter().map(|c| c.id).collect())
                    .collect(),
            });
            let mut latest = now;
            for contact in first {
                let at = self.alert_time(e.priority, contact, now);
                latest = latest.max(at);
                writes.push(outbound(
                    contact.address.clone(),
                    None,
                    OutboundKind::Alert,
                    message.clone(),
                    at,
                ));
                writes.push(event(
                    e.id,
                    EscalationAction::Alerted,
                    Some(contact.id),
                    0,
                    &contact.name,
                ));
            }
            update.level = 0;
            update.supervisor_id = Some(first[0].id);
            // The window counts from when the alert can be read, not from a night it waited.
            update.due_at = Some(latest + window);
            writes.push(Write::UpdateEscalation(update));
            return Ok(Plan { writes });
        }

        // Not acknowledged within its window.
        let at_level = |level: i64| -> Vec<&ChainContact> {
            snap.chain
                .iter()
                .filter(|c| c.level == level && !c.contact.opted_out)
                .collect()
        };
        let current = at_level(e.level);
        let next = at_level(e.level + 1);
        let by: Vec<&str> = current.iter().map(|c| c.contact.name.as_str()).collect();
        let mut latest = now;
        let mut send = |writes: &mut Vec<Write>,
                        contact: &Contact,
                        action: EscalationAction,
                        level: i64|
         -> Result<(), String> {
            let mut view = self.desk_view(contact);
            view.escalation = alert_view(
                e,
                &caregiver_of(&e.context).0,
                &caregiver_of(&e.context).1,
                now,
            );
            view.escalation.by = by.join(", ");
            view.escalation.action = action.as_str().to_owned();
            view.alert = e.message.clone();
            view.window = short_duration(window);
            let body = self.render_desk("supervisor/reescalated", Lang::En, &view)?;
            let at = self.alert_time(e.priority, contact, now);
            latest = latest.max(at);
            writes.push(outbound(
                contact.address.clone(),
                None,
                OutboundKind::Alert,
                body,
                at,
            ));
            writes.push(event(e.id, action, Some(contact.id), level, &contact.name));
            Ok(())
        };
        if !next.is_empty() {
            for c in &current {
                send(&mut writes, &c.contact, EscalationAction::Resent, e.level)?;
            }
            for c in &next {
                send(
                    &mut writes,
                    &c.contact,
                    EscalationAction::Reescalated,
                    e.level + 1,
                )?;
            }
            update.level = e.level + 1;
            update.supervisor_id = Some(next[0].contact.id);
            update.due_at = Some(latest + window);
        } else if e.resends < LAST_LEVEL_RESENDS && !current.is_empty() {
            for c in &current {
                send(&mut writes, &c.contact, EscalationAction::Resent, e.level)?;
            }
            update.resends = e.resends + 1;
            update.due_at = Some(latest + window);
        } else {
            // Nobody further to raise it to: the daily digest keeps listing it.
            update.due_at = None;
        }
        writes.push(Write::UpdateEscalation(update));
        Ok(Plan { writes })
    }

    /// The routing chain for a new escalation: the caregiver's supervisor, the branch's
    /// contact, program staff; contacts who opted out are skipped, and nobody appears twice.
    fn chain_for(&self, snap: &EscalationSnapshot) -> Vec<Vec<Contact>> {
        let settings = &self.settings.escalation;
        let named = |id: &str| snap.named.iter().find(|c| c.external_id == id);
        let branch = snap.caregiver.as_ref().map(|c| c.branch.as_str());
        let mut levels: Vec<Vec<Contact>> = Vec::new();
        let mut seen: Vec<i64> = Vec::new();
        let mut level = |contacts: Vec<&Contact>, levels: &mut Vec<Vec<Contact>>| {
            let fresh: Vec<Contact> = contacts
                .into_iter()
                .filter(|c| !c.opted_out && !seen.contains(&c.id))
                .cloned()
                .collect();
            seen.extend(fresh.iter().map(|c| c.id));
            if !fresh.is_empty() {
                levels.push(fresh);
            }
        };
        level(snap.supervisor.iter().collect(), &mut levels);
        let contact = branch
            .and_then(|b| settings.branch_contacts.get(b))
            .and_then(|id| named(id));
        level(contact.into_iter().collect(), &mut levels);
        let staff: Vec<&Contact> = settings
            .program_staff
            .iter()
            .filter_map(|id| named(id))
            .collect();
        level(staff, &mut levels);
        levels
    }

    /// A supervisor's text: a reply to one of their alerts, or a one-line help. `None` hands
    /// the text on to the caregiver path (the sender is also a caregiver in a conversation and
    /// the text is not a numbered reply to an alert).
    pub(crate) fn decide_desk(
        &self,
        snap: &Snapshot,
        desk: &Desk,
        inbound: &Inbound,
    ) -> Result<Option<Plan>, String> {
        let now = inbound.received_at;
        let busy_caregiver =
            snap.caregiver.as_ref().is_some_and(|c| c.active) && snap.conversation.is_some();
        let reply = parse_reply(&inbound.text);
        let open: Vec<&DeskAlert> = desk
            .alerts
            .iter()
            .filter(|a| a.escalation.status != EscalationStatus::Done)
            .collect();
        let mut writes = Vec::new();
        let confirm = |writes: &mut Vec<Write>, body: String| {
            writes.push(outbound(
                snap.address.clone(),
                None,
                OutboundKind::Reply,
                body,
                now,
            ));
        };
        let help = |lang: Lang| -> Result<String, String> {
            let mut view = self.desk_view(&desk.me);
            view.open = open
                .iter()
                .map(|a| a.escalation.id.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            view.escalation.id = open.first().map_or(14, |a| a.escalation.id);
            self.render_desk("supervisor/help", lang, &view)
        };
        let Some(reply) = reply else {
            if busy_caregiver {
                return Ok(None);
            }
            confirm(&mut writes, help(Lang::En)?);
            return Ok(Some(Plan { writes }));
        };
        let alert = match reply.id {
            Some(id) => match desk.alerts.iter().find(|a| a.escalation.id == id) {
                Some(alert) => alert,
                None => {
                    let mut view = self.desk_view(&desk.me);
                    view.escalation.id = id;
                    confirm(
                        &mut writes,
                        self.render_desk("supervisor/refused", reply.lang, &view)?,
                    );
                    return Ok(Some(Plan { writes }));
                }
            },
            // Without a number: the one open alert, if there is exactly one.
            None if busy_caregiver => return Ok(None),
            None => match open.as_slice() {
                [only] => only,
                _ => {
                    confirm(&mut writes, help(reply.lang)?);
                    return Ok(Some(Plan { writes }));
                }
            },
        };
        self.act(desk, alert, &reply, now, &mut writes)?;
        Ok(Some(Plan { writes }))
    }

    /// Applies ACK, CALL, NOTE or DONE to `alert`, confirms it to the supervisor, and the first
    /// time the alert is taken up tells the others who had it and, if the flow asks, the
    /// caregiver.
    fn act(
        &self,
        desk: &Desk,
        alert: &DeskAlert,
        reply: &SupervisorReply,
        now: DateTime<Utc>,
        writes: &mut Vec<Write>,
    ) -> Result<(), String> {
        let e = &alert.escalation;
        let me = &desk.me;
        let mut view = self.desk_view(me);
        view.escalation = alert_view(e, &alert.caregiver, &alert.branch, now);
        view.escalation.action = reply.command.word().to_owned();
        let owner = e
            .supervisor_id
            .and_then(|id| alert.chain.iter().find(|c| c.contact.id == id))
            .map_or_else(String::new, |c| c.contact.name.clone());
        view.escalation.by = owner;
        let reply_to =
            |body: String| outbound(me.address.clone(), None, OutboundKind::Reply, body, now);

        // Closed already, or taken up by someone else: say so and change nothing (a note is
        // always welcome).
        let taken_by_other = e.status != EscalationStatus::Open && e.supervisor_id != Some(me.id);
        let settled = match reply.command {
            Command::Note => false,
            Command::Done => e.status == EscalationStatus::Done,
            Command::Ack | Command::Call => {
                e.status == EscalationStatus::Done
                    || (taken_by_other
                        && !(reply.command == Command::Call
                            && e.status == EscalationStatus::Acknowledged))
            }
        };
        if settled {
            writes.push(reply_to(self.render_desk(
                "supervisor/already",
                reply.lang,
                &view,
            )?));
            return Ok(());
        }
        if reply.command == Command::Note && reply.text.is_empty() {
            let mut help = self.desk_view(me);
            help.escalation.id = e.id;
            help.open = e.id.to_string();
            writes.push(reply_to(self.render_desk(
                "supervisor/help",
                reply.lang,
                &help,
            )?));
            return Ok(());
        }

        let mut update = e.update();
        let first_take_up = e.status == EscalationStatus::Open;
        update.status = match (reply.command, e.status) {
            (Command::Done, _) => EscalationStatus::Done,
            (Command::Call, _) => EscalationStatus::Calling,
            (_, EscalationStatus::Open) => EscalationStatus::Acknowledged,
            (_, status) => status,
        };
        if update.acknowledged_at.is_none() {
            update.acknowledged_at = Some(now);
        }
        if update.status == EscalationStatus::Done {
            update.closed_at = Some(now);
        }
        if reply.command != Command::Note || first_take_up {
            update.supervisor_id = Some(me.id);
        }
        // Taken up: the follow-up clock stops.
        update.due_at = None;
        let my_level = alert
            .chain
            .iter()
            .find(|c| c.contact.id == me.id)
            .map_or(e.level, |c| c.level);
        writes.push(Write::UpdateEscalation(update));
        writes.push(event(
            e.id,
            reply.command.action(),
            Some(me.id),
            my_level,
            &reply.text,
        ));
        let template = match reply.command {
            Command::Ack => "supervisor/acknowledged",
            Command::Call => "supervisor/calling",
            Command::Note => "supervisor/noted",
            Command::Done => "supervisor/done",
        };
        view.escalation.status = update_status_word(reply.command, e.status);
        writes.push(reply_to(self.render_desk(template, reply.lang, &view)?));

        if first_take_up {
            // Everyone else who was sent it knows it is in hand.
            view.escalation.by = me.name.clone();
            for other in alert.chain.iter().filter(|c| {
                c.contact.id != me.id && c.notified_at.is_some() && !c.contact.opted_out
            }) {
                let mut theirs = view.clone();
                theirs.supervisor = Name {
                    name: other.contact.name.clone(),
                };
                writes.push(outbound(
                    other.contact.address.clone(),
                    None,
                    OutboundKind::Alert,
                    self.render_desk("supervisor/taken_up", Lang::En, &theirs)?,
                    self.alert_time(e.priority, &other.contact, now),
                ));
            }
            if let Some(template) = &e.when_taken_up {
                writes.extend(self.tell_caregiver(e, template, me, now)?);
            }
        }
        Ok(())
    }

    /// The flow's message to the caregiver that a supervisor took their alert up: a program
    /// message (it waits for their window), in their language, naming who took it.
    fn tell_caregiver(
        &self,
        e: &EscalationState,
        template: &str,
        me: &Contact,
        now: DateTime<Utc>,
    ) -> Result<Vec<Write>, String> {
        let Ok(address) = serde_json::from_value::<Address>(e.context["address"].clone()) else {
            return Ok(Vec::new());
        };
        let lang: Lang = serde_json::from_value(e.context["lang"].clone()).unwrap_or(Lang::En);
        let tz = e.context["timezone"].as_str().unwrap_or("UTC");
        let mut ctx = e.context.clone();
        if let Some(map) = ctx.as_object_mut() {
            map.insert("agency".into(), json!(self.settings.agency));
            map.insert("supervisor".into(), json!({ "name": me.name }));
        }
        let (body, _) = self
            .catalog
            .templates
            .render(template, lang, &ctx)
            .map_err(|err| err.to_string())?;
        let at = self
            .settings
            .caregiver_window
            .next_allowed(now, quiet_hours::zone(tz));
        Ok(vec![
            outbound(
                address,
                Some(e.caregiver_id),
                OutboundKind::Program,
                body,
                at,
            ),
            event(
                e.id,
                EscalationAction::CaregiverTold,
                Some(me.id),
                e.level,
                template,
            ),
        ])
    }

    /// Today's digest for one supervisor, when it is due: once a local day, at the configured
    /// time, inside their window, and only when they have open alerts.
    pub(crate) fn decide_digest(&self, desk: &Desk, now: DateTime<Utc>) -> Result<Plan, String> {
        let tz = quiet_hours::zone(&desk.me.timezone);
        let local = now.with_timezone(&tz);
        let day = local.date_naive();
        let in_window = self.settings.supervisor_window.next_allowed(now, tz) == now;
        let digest_at = self.settings.escalation.digest_at;
        if desk.last_digest == Some(day) || local.time() < digest_at || !in_window {
            return Ok(Plan::default());
        }
        // Today's digest lists what was already open at digest time: an alert raised later in
        // the day was just sent, and waits for tomorrow's.
        let cutoff = tz
            .from_local_datetime(&day.and_time(digest_at))
            .earliest()
            .map_or(now, |t| t.with_timezone(&Utc));
        let alerts: Vec<&DeskAlert> = desk
            .alerts
            .iter()
            .filter(|a| a.escalation.raised_at < cutoff)
            .collect();
        let Some(first) = alerts.first() else {
            return Ok(Plan::default());
        };
        let mut view = self.desk_view(&desk.me);
        view.alerts = alerts
            .iter()
            .map(|a| alert_view(&a.escalation, &a.caregiver, &a.branch, now))
            .collect();
        view.open = alerts
            .iter()
            .map(|a| a.escalation.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        view.escalation.id = first.escalation.id;
        let body = self.render_desk("supervisor/digest", Lang::En, &view)?;
        Ok(Plan {
            writes: vec![
                outbound(
                    desk.me.address.clone(),
                    None,
                    OutboundKind::Alert,
                    body,
                    now,
                ),
                Write::DigestSent {
                    supervisor_id: desk.me.id,
                    day,
                },
            ],
        })
    }
}

/// The status an alert has after `command`, as the confirmation names it.
fn update_status_word(command: Command, before: EscalationStatus) -> String {
    match (command, before) {
        (Command::Done, _) => "done",
        (Command::Call, _) => "calling",
        (_, EscalationStatus::Open) => "acknowledged",
        (_, status) => status.as_str(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Option<(Command, Option<i64>, String, Lang)> {
        parse_reply(text).map(|r| (r.command, r.id, r.text, r.lang))
    }

    #[test]
    fn replies_are_read_in_any_case_with_or_without_spaces_and_marks() {
        assert_eq!(
            reply("ACK 14"),
            Some((Command::Ack, Some(14), String::new(), Lang::En))
        );
        assert_eq!(
            reply(" ack #14. "),
            Some((Command::Ack, Some(14), String::new(), Lang::En))
        );
        assert_eq!(
            reply("Ack14"),
            Some((Command::Ack, Some(14), String::new(), Lang::En))
        );
        assert_eq!(
            reply("call 7"),
            Some((Command::Call, Some(7), String::new(), Lang::En))
        );
        assert_eq!(
            reply("NOTE 14 called her, all fine"),
            Some((
                Command::Note,
                Some(14),
                "called her, all fine".into(),
                Lang::En
            ))
        );
        assert_eq!(
            reply("Done 14: resolved with the family"),
            Some((
                Command::Done,
                Some(14),
                "resolved with the family".into(),
                Lang::En
            ))
        );
    }

    #[test]
    fn spanish_replies_are_read_too() {
        assert_eq!(
            reply("VISTO 3"),
            Some((Command::Ack, Some(3), String::new(), Lang::Es))
        );
        assert_eq!(
            reply("Llamaré 3"),
            Some((Command::Call, Some(3), String::new(), Lang::Es))
        );
        assert_eq!(
            reply("nota 3 hablé con ella"),
            Some((Command::Note, Some(3), "hablé con ella".into(), Lang::Es))
        );
        assert_eq!(
            reply("LISTO 3"),
            Some((Command::Done, Some(3), String::new(), Lang::Es))
        );
    }

    #[test]
    fn a_reply_without_a_number_keeps_its_words() {
        assert_eq!(
            reply("ok thanks"),
            Some((Command::Ack, None, "thanks".into(), Lang::En))
        );
        assert_eq!(
            reply("DONE"),
            Some((Command::Done, None, String::new(), Lang::En))
        );
    }

    #[test]
    fn other_texts_are_not_replies() {
        assert_eq!(reply("who is this?"), None);
        assert_eq!(reply("14"), None);
        assert_eq!(reply("acknowledge-ment"), None);
        assert_eq!(reply(""), None);
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::minutes(40)), "40m");
        assert_eq!(short_duration(Duration::hours(2)), "2h");
        assert_eq!(short_duration(Duration::hours(30)), "30h");
        assert_eq!(short_duration(Duration::days(3)), "3d");
    }
}
