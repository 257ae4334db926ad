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

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use crate::domain::phone::masked_error;
use crate::domain::{Address, Lang, Priority};
use crate::model::{
    ChainContact, Contact, DecideError, Desk, DeskAlert, EscalationAction, EscalationSnapshot,
    EscalationState, EscalationStatus, Inbound, NewOutbound, OutboundKind, Plan, Snapshot, Write,
};
use crate::quiet_hours;
use crate::render::MessageContext;
use crate::render::desk::{AlertView, DeskView, Name, sample_desk_view, short_duration};
use crate::runner::Runner;
use crate::sms::segments;
use crate::store::Store;

mod reply;
pub use reply::{Command, SupervisorReply, parse_reply};

/// How many times an alert nobody acknowledged is re-sent at the last level of its chain
/// before the follow-up clock stops (the daily digest keeps listing it).
pub const LAST_LEVEL_RESENDS: i64 = 2;

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
    ) -> Result<String, DecideError> {
        self.catalog
            .templates
            .render(template, lang, view)
            .map(|(text, _)| text)
            .map_err(DecideError::from)
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
    // Long because it is the follow-up clock's whole decision for one alert (route, re-send,
    // raise to the next level, stop at the last) with the texts each sends.
    pub(crate) fn decide_escalation(
        &self,
        snap: &EscalationSnapshot,
        now: DateTime<Utc>,
    ) -> Result<Plan, DecideError> {
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
         -> Result<(), DecideError> {
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
    ) -> Result<Option<Plan>, DecideError> {
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
        let help = |lang: Lang| -> Result<String, DecideError> {
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
    ) -> Result<(), DecideError> {
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
    ) -> Result<Vec<Write>, DecideError> {
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
        let (body, _) = self.catalog.templates.render(template, lang, &ctx)?;
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
    pub(crate) fn decide_digest(
        &self,
        desk: &Desk,
        now: DateTime<Utc>,
    ) -> Result<Plan, DecideError> {
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
