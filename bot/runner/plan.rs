//! Turning the engine's events into the plan of writes the store applies: every message rendered
//! (its template, the caregiver's language, encoding and segments), answers, escalations,
//! the conversation's new state and wake-up time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Runner, telegram};
use crate::domain::{Address, Lang};
use crate::flow::Flow;
use crate::flow::engine::{Event, Outcome, Person, State, Transition};
use crate::model::{
    Caregiver, ConsentStatus, ConvRef, ConversationStatus, DecideError, NewOutbound, OutboundKind,
    Plan, Snapshot, Write,
};
use crate::quiet_hours;
use crate::render::{CaregiverView, EscalationView, FlowView, MessageContext, SupervisorView};
use crate::sms::segments;
use crate::store::Store;

/// The caregiver as flows see them.
pub fn person(c: &Caregiver) -> Person {
    Person {
        first_name: c.first_name.clone(),
        language: c.language,
        branch: c.branch.clone(),
        timezone: c.timezone.clone(),
        groups: c.groups.clone(),
        fields: c.fields.clone(),
        tags: c.tags.clone(),
    }
}

/// Turns engine events into store writes, rendering every message on the way.
pub(super) struct PlanBuilder<'a, S> {
    pub(super) runner: &'a Runner<S>,
    pub(super) snap: &'a Snapshot,
    pub(super) now: DateTime<Utc>,
    pub(super) conv: ConvRef,
    pub(super) writes: Vec<Write>,
}

impl<'a, S: Store> PlanBuilder<'a, S> {
    pub(super) fn new(runner: &'a Runner<S>, snap: &'a Snapshot, now: DateTime<Utc>) -> Self {
        PlanBuilder {
            runner,
            snap,
            now,
            conv: ConvRef::New,
            writes: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, w: Write) {
        self.writes.push(w);
    }

    pub(super) fn finish(self) -> Plan {
        Plan {
            writes: self.writes,
        }
    }

    pub(super) fn caregiver_id(&self) -> Option<i64> {
        self.snap.caregiver.as_ref().map(|c| c.id)
    }

    /// Queues a system template (consent replies, the stranger reply) to the snapshot's address.
    pub(super) fn system(
        &mut self,
        lang: Lang,
        template: &str,
        kind: OutboundKind,
    ) -> Result<(), DecideError> {
        let person = self
            .snap
            .caregiver
            .as_ref()
            .map(person)
            .unwrap_or_else(|| Person {
                first_name: String::new(),
                language: lang,
                branch: String::new(),
                timezone: "UTC".into(),
                groups: vec![],
                fields: BTreeMap::new(),
                tags: vec![],
            });
        let empty = BTreeMap::new();
        let ctx = self.context(&person, "", &empty, &empty, ("system", "System"), None);
        let (body, _) = self.runner.catalog.templates.render(template, lang, &ctx)?;
        let address = self.snap.address.clone();
        let caregiver_id = self.caregiver_id();
        self.queue(
            address,
            caregiver_id,
            None,
            kind,
            body,
            Vec::new(),
            self.now,
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue(
        &mut self,
        address: Address,
        caregiver_id: Option<i64>,
        conversation: Option<ConvRef>,
        kind: OutboundKind,
        body: String,
        buttons: Vec<(String, String)>,
        not_before: DateTime<Utc>,
    ) {
        let seg = segments::analyze(&body);
        self.writes.push(Write::Outbound(NewOutbound {
            address,
            caregiver_id,
            conversation,
            kind,
            encoding: match seg.encoding {
                segments::Encoding::Gsm7 => "gsm7".into(),
                segments::Encoding::Ucs2 => "ucs2".into(),
            },
            segments: seg.segments,
            body,
            not_before,
            buttons,
        }));
    }

    pub(super) fn context<'c>(
        &self,
        person: &'c Person,
        last_name: &'c str,
        answers: &'c BTreeMap<String, Value>,
        vars: &'c BTreeMap<String, Value>,
        flow: (&'c str, &'c str),
        escalation: Option<EscalationView>,
    ) -> MessageContext<'c>
    where
        'a: 'c,
    {
        let supervisor = self
            .snap
            .caregiver
            .as_ref()
            .and_then(|c| c.supervisor.as_ref())
            .map_or_else(
                || match person.language {
                    Lang::En => "your supervisor".to_owned(),
                    Lang::Es => "tu supervisor(a)".to_owned(),
                },
                |s| s.name.clone(),
            );
        MessageContext {
            caregiver: CaregiverView { person, last_name },
            agency: &self.runner.settings.agency,
            supervisor: SupervisorView { name: supervisor },
            answers,
            vars,
            flow: FlowView {
                id: flow.0,
                name: flow.1,
            },
            escalation,
        }
    }

    /// Applies an engine transition: answers, fields, escalations, messages, and the
    /// conversation's new state.
    // Long because it is one match over the engine's events (send, answer, opt-in, field, tag,
    // escalate, wait, end), each arm the write that event becomes.
    pub(super) fn apply(
        &mut self,
        flow: &Flow,
        start_person: &Person,
        t: Transition,
        kind: OutboundKind,
    ) -> Result<(), DecideError> {
        let caregiver = self
            .snap
            .caregiver
            .as_ref()
            .expect("flows run for caregivers");
        let mut person = start_person.clone();
        let prior: Option<State> = self
            .snap
            .conversation
            .as_ref()
            .and_then(|c| serde_json::from_value(c.state.clone()).ok());
        let mut answers = prior
            .as_ref()
            .map(|s| s.answers.clone())
            .unwrap_or_default();
        let vars = t
            .state
            .as_ref()
            .map(|s| s.vars.clone())
            .or_else(|| prior.as_ref().map(|s| s.vars.clone()))
            .unwrap_or_else(|| flow.vars.clone());
        let lang = t
            .state
            .as_ref()
            .map(|s| s.lang)
            .or(prior.as_ref().map(|s| s.lang))
            .unwrap_or(caregiver.language);
        let mut fields_changed = false;
        let mut ended = None;
        let tz = quiet_hours::zone(&caregiver.timezone);

        for event in t.events {
            match event {
                Event::Send {
                    step,
                    template,
                    buttons,
                    unprompted,
                } => {
                    // On Telegram a button names its question, so a late tap cannot answer
                    // another one; the reply it sends is still what typing would send.
                    let buttons = buttons
                        .into_iter()
                        .map(|(label, reply)| (label, telegram::question_payload(&step, &reply)))
                        .collect();
                    let ctx = self.context(
                        &person,
                        &caregiver.last_name,
                        &answers,
                        &vars,
                        (&flow.id, &flow.name),
                        None,
                    );
                    let (body, _) = self
                        .runner
                        .catalog
                        .templates
                        .render(&template, lang, &ctx)?;
                    // A reply to someone who just wrote is never held; anything they did not
                    // just prompt waits for their window.
                    let kind = if unprompted {
                        OutboundKind::Program
                    } else {
                        kind
                    };
                    let not_before = match kind {
                        OutboundKind::Program => self
                            .runner
                            .settings
                            .caregiver_window
                            .next_allowed(self.now, tz),
                        _ => self.now,
                    };
                    self.queue(
                        self.snap.address.clone(),
                        Some(caregiver.id),
                        Some(self.conv),
                        kind,
                        body,
                        buttons,
                        not_before,
                    );
                }
                Event::Answer {
                    step,
                    key,
                    value,
                    raw,
                    anonymous,
                    free_text,
                } => {
                    answers.insert(key.clone(), value.clone());
                    self.push(Write::Answer {
                        conversation: self.conv,
                        flow_id: flow.id.clone(),
                        step,
                        key,
                        value,
                        raw,
                        anonymous,
                        free_text,
                    });
                }
                Event::OptIn => {
                    if self.snap.consent != ConsentStatus::OptedIn {
                        self.push(Write::Consent {
                            status: ConsentStatus::OptedIn,
                            source: "flow".into(),
                            detail: format!("{}: yes", flow.id),
                        });
                    }
                }
                Event::SetField { name, value } => {
                    person.fields.insert(name, value);
                    fields_changed = true;
                }
                Event::Tag { name, add } => {
                    person.tags.retain(|t| *t != name);
                    if add {
                        person.tags.push(name);
                    }
                    fields_changed = true;
                }
                Event::Escalate {
                    step,
                    priority,
                    template,
                    reason,
                    answer,
                    when_taken_up,
                    consented,
                } => {
                    // The alert is rendered when it is routed, right after this commit: it
                    // shows the id supervisors reply with, which the store assigns. Keep what
                    // it renders with; anonymous answers only with the caregiver's yes.
                    let mut shown = answers.clone();
                    if !consented {
                        for key in flow.anonymous_keys() {
                            shown.remove(key);
                        }
                    }
                    let ctx = self.context(
                        &person,
                        &caregiver.last_name,
                        &shown,
                        &vars,
                        (&flow.id, &flow.name),
                        None,
                    );
                    let context = crate::escalation::raise_context(
                        &ctx,
                        &self.snap.address,
                        lang,
                        &caregiver.timezone,
                    );
                    self.push(Write::Escalation {
                        conversation: self.conv,
                        flow_id: flow.id.clone(),
                        step,
                        priority,
                        reason,
                        answer,
                        message: String::new(),
                        template,
                        context,
                        when_taken_up,
                        consented,
                    });
                }
                Event::Wait { .. } => {}
                Event::End { outcome } => ended = Some(outcome),
            }
        }
        if fields_changed {
            self.push(Write::CaregiverFields {
                fields: person.fields.clone(),
                tags: person.tags.clone(),
            });
        }
        let (status, state, wake_at) = match (t.state, ended) {
            (Some(state), _) => (
                ConversationStatus::Active,
                serde_json::to_value(&state).expect("state serializes"),
                state.wake_at(),
            ),
            (None, outcome) => (
                match outcome {
                    Some(Outcome::Expired) => ConversationStatus::Expired,
                    _ => ConversationStatus::Completed,
                },
                // An ended conversation keeps its answers, but not the anonymous ones: the
                // conversation names its caregiver. Nor alerts that waited for a yes that never
                // came: they quote the answer.
                serde_json::to_value(prior.map(|mut s| {
                    s.answers = answers.clone();
                    for key in flow.anonymous_keys() {
                        s.answers.remove(key);
                    }
                    s.consent = None;
                    s
                }))
                .expect("state serializes"),
                None,
            ),
        };
        self.push(Write::UpdateConversation {
            conversation: self.conv,
            status,
            state,
            wake_at,
        });
        Ok(())
    }
}
