//! The runner: the one orchestrator between transports and the store. An inbound message goes
//! consent keywords -> engine -> plan, and the store applies the plan in the transaction that
//! recorded the message; flow starts and timers take the same path. Deciding is pure (it reads
//! a `Snapshot` and returns a `Plan`), so this file holds the domain rules and no SQL.

mod telegram;

pub use telegram::{
    TapVerdict, TelegramInbound, TelegramInput, TelegramOutcome,
    invite_code_hash as telegram_invite_hash,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::catalog::Catalog;
use crate::consent::{self, Keyword};
use crate::domain::{Address, Channel, Lang, Priority};
use crate::flow::Flow;
use crate::flow::definition::{Program, WhenBusy};
use crate::flow::engine::{self, Event, Input, Outcome, Person, State, Transition};
use crate::quiet_hours::{self, Window};
use crate::render::{
    Agency, CaregiverView, EscalationView, FlowView, MessageContext, SupervisorView,
};
use crate::sms::segments;
use crate::store::{
    Audience, Caregiver, ConsentStatus, ConvRef, ConversationStatus, Inbound, InboundOutcome,
    NewOutbound, OutboundKind, Plan, Snapshot, Store, StoreError, Supervisor, Write,
};

/// What the runner needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub agency: Agency,
    /// When program messages may reach caregivers, in their own time zone.
    pub caregiver_window: Window,
    /// When non-urgent alerts may reach supervisors, in their own time zone.
    pub supervisor_window: Window,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            agency: Agency {
                name: "your agency".into(),
                phone: "the office".into(),
            },
            caregiver_window: Window::default(),
            supervisor_window: Window::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no flow with id {0:?}")]
    UnknownFlow(String),
}

/// How many conversations a start began and why the rest were skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartReport {
    pub started: usize,
    pub skipped: BTreeMap<&'static str, usize>,
}

pub struct Runner<S> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub settings: RunnerSettings,
    /// Every flow revision this process knows, by revision id. A conversation runs on the
    /// revision it started on, even after its file changes.
    revisions: RwLock<HashMap<i64, Arc<Flow>>>,
    /// The revision id of each flow file as it is now.
    current: HashMap<String, i64>,
}

/// Why a revision was needed but not loaded; the runner loads it and tries again.
const MISSING_REVISION: &str = "flow revision not loaded: ";

impl<S: Store> Runner<S> {
    /// Registers the text of every flow in the catalog as a revision, so conversations started
    /// from now on can always find the exact version they started on.
    pub async fn new(
        store: S,
        catalog: Arc<Catalog>,
        settings: RunnerSettings,
    ) -> Result<Self, RunError> {
        let mut revisions = HashMap::new();
        let mut current = HashMap::new();
        for (id, loaded) in &catalog.flows {
            let rev = store
                .register_flow_revision(id, loaded.flow.version, &loaded.source)
                .await?;
            revisions.insert(rev, loaded.flow.clone());
            current.insert(id.clone(), rev);
        }
        Ok(Runner {
            store,
            catalog,
            settings,
            revisions: RwLock::new(revisions),
            current,
        })
    }

    /// Loads a stored revision that this process has not seen (started by an older file or by
    /// another instance).
    async fn load_revision(&self, rev: i64) -> Result<(), RunError> {
        let Some(stored) = self.store.flow_revision(rev).await? else {
            return Err(StoreError::Corrupt(format!("flow revision {rev} does not exist")).into());
        };
        let flow = Flow::parse(
            &format!("{} (revision {rev})", stored.flow_id),
            &stored.source,
        )
        .map_err(|e| {
            StoreError::Corrupt(format!("stored flow revision {rev} no longer parses: {e}"))
        })?
        .0;
        self.revisions
            .write()
            .expect("revision cache poisoned")
            .insert(rev, Arc::new(flow));
        Ok(())
    }

    /// Runs `op`, loading a missing flow revision and retrying once if that is why it failed.
    async fn with_revisions<T, F, Fut>(&self, op: F) -> Result<T, RunError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match op().await {
            Err(StoreError::Decide(msg)) if msg.starts_with(MISSING_REVISION) => {
                let rev: i64 = msg[MISSING_REVISION.len()..]
                    .parse()
                    .map_err(|_| StoreError::Decide(msg.clone()))?;
                self.load_revision(rev).await?;
                Ok(op().await?)
            }
            other => Ok(other?),
        }
    }

    /// Handles one inbound message end to end. `Ok` means it is committed and any reply is
    /// queued durably; `Err` means nothing was recorded and the provider may retry.
    pub async fn handle_inbound(&self, inbound: &Inbound) -> Result<InboundOutcome, RunError> {
        let decide = |snap: &Snapshot| self.decide_inbound(snap, inbound);
        self.with_revisions(|| self.store.handle_inbound(inbound, &decide))
            .await
    }

    /// Starts `flow_id` now for every caregiver in the audience.
    pub async fn start(
        &self,
        flow_id: &str,
        audience: &Audience,
        vars: BTreeMap<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<StartReport, RunError> {
        let loaded = self
            .catalog
            .get(flow_id)
            .ok_or_else(|| RunError::UnknownFlow(flow_id.to_owned()))?;
        let rev = self.current[flow_id];
        let caregivers = self.store.audience(audience).await?;
        let report = Mutex::new(StartReport::default());
        // One transaction per batch keeps a start for 10,000 caregivers fast, and a crash
        // mid-way leaves whole batches: a caregiver is either started or not.
        for batch in caregivers.chunks(500) {
            // Each caregiver on one channel: the one they prefer among those open to us.
            let addresses: Vec<Address> = batch.iter().map(reach).collect();
            let tally = Mutex::new(StartReport::default());
            let decide = |snap: &Snapshot| {
                let (plan, outcome) = self.decide_start(&loaded.flow, rev, &vars, snap, now)?;
                let mut t = tally.lock().expect("tally poisoned");
                match outcome {
                    Ok(()) => t.started += 1,
                    Err(reason) => *t.skipped.entry(reason).or_default() += 1,
                }
                Ok(plan)
            };
            self.with_revisions(|| {
                *tally.lock().expect("tally poisoned") = StartReport::default();
                self.store.handle_addresses(&addresses, now, &decide)
            })
            .await?;
            let t = tally.into_inner().expect("tally poisoned");
            let mut r = report.lock().expect("report poisoned");
            r.started += t.started;
            for (k, v) in t.skipped {
                *r.skipped.entry(k).or_default() += v;
            }
        }
        Ok(report.into_inner().expect("report poisoned"))
    }

    /// Fires every conversation timer (reminder, expiry) due at `now`; returns how many fired.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, RunError> {
        let mut fired = 0;
        loop {
            let due = self.store.due_conversations(now, 200).await?;
            if due.is_empty() {
                return Ok(fired);
            }
            let n = due.len();
            for d in due {
                let decide = |snap: &Snapshot| self.decide_timer(snap, now);
                if self
                    .with_revisions(|| self.store.handle_due_conversation(d.id, now, &decide))
                    .await?
                {
                    fired += 1;
                }
            }
            if n < 200 {
                return Ok(fired);
            }
        }
    }

    fn flow_for(&self, rev: i64) -> Result<Arc<Flow>, String> {
        self.revisions
            .read()
            .expect("revision cache poisoned")
            .get(&rev)
            .cloned()
            .ok_or_else(|| format!("{MISSING_REVISION}{rev}"))
    }

    // ---------------------------------------------------------------------------------------
    // Decisions (pure: snapshot in, plan out)

    fn decide_inbound(&self, snap: &Snapshot, inbound: &Inbound) -> Result<Plan, String> {
        let mut plan = PlanBuilder::new(self, snap, inbound.received_at);
        plan.note_channel();
        let text = inbound.text.as_str();
        let keyword_lang = consent::keyword_language(text).and_then(|l| l.parse::<Lang>().ok());
        let lang = keyword_lang
            .or(snap.caregiver.as_ref().map(|c| c.language))
            .unwrap_or(Lang::En);

        // Consent comes before any flow, for everyone who texts, on the roster or not.
        let keyword = consent::classify(text).or_else(|| {
            // YES is an answer to questions; it means START only for someone opted out.
            (snap.consent == ConsentStatus::OptedOut && consent::is_yes(text))
                .then_some(Keyword::OptIn)
        });
        if consent::stops_everything(text) {
            plan.stop_everything(text, lang)?;
            return Ok(plan.finish());
        }
        match keyword {
            Some(Keyword::OptOut) => {
                if snap.consent != ConsentStatus::OptedOut {
                    plan.push(Write::Consent {
                        status: ConsentStatus::OptedOut,
                        source: "keyword".into(),
                        detail: text.trim().to_owned(),
                    });
                    // STOP stops this channel: a conversation running on another one goes on.
                    if let Some(conv) = snap
                        .conversation
                        .as_ref()
                        .filter(|c| c.channel == snap.address.channel)
                    {
                        plan.push(Write::UpdateConversation {
                            conversation: ConvRef::Existing(conv.id),
                            status: ConversationStatus::Interrupted,
                            state: conv.state.clone(),
                            wake_at: None,
                        });
                    }
                    plan.system(lang, telegram::stop_template(snap), OutboundKind::Consent)?;
                }
                return Ok(plan.finish());
            }
            Some(Keyword::OptIn) => {
                if snap.consent != ConsentStatus::OptedIn {
                    plan.push(Write::Consent {
                        status: ConsentStatus::OptedIn,
                        source: "keyword".into(),
                        detail: text.trim().to_owned(),
                    });
                }
                plan.system(lang, "system/start", OutboundKind::Consent)?;
                return Ok(plan.finish());
            }
            Some(Keyword::Help) => {
                let help = telegram::help_template(snap.address.channel);
                plan.system(lang, help, OutboundKind::Consent)?;
                return Ok(plan.finish());
            }
            None => {}
        }

        // After STOP, nothing but the confirmation until START: the message is kept, unanswered.
        if snap.consent == ConsentStatus::OptedOut {
            return Ok(plan.finish());
        }
        let caregiver = match &snap.caregiver {
            Some(c) if c.active => c,
            _ => {
                // Not on the roster (or no longer): one polite reply a day, never a flow.
                if !snap.stranger_replied_today {
                    plan.system(lang, "system/stranger", OutboundKind::Reply)?;
                    plan.push(Write::StrangerReplied {
                        day: inbound.received_at.date_naive(),
                    });
                }
                return Ok(plan.finish());
            }
        };
        let Some(conv) = &snap.conversation else {
            // A caregiver writing outside any conversation: say who we are, once a day.
            if !snap.stranger_replied_today {
                let help = telegram::help_template(snap.address.channel);
                plan.system(lang, help, OutboundKind::Reply)?;
                plan.push(Write::StrangerReplied {
                    day: inbound.received_at.date_naive(),
                });
            }
            return Ok(plan.finish());
        };
        let flow = self.flow_for(conv.flow_rev)?;
        let state: State = serde_json::from_value(conv.state.clone())
            .map_err(|e| format!("conversation {} has unreadable state: {e}", conv.id))?;
        let person = person(caregiver);
        plan.conv = ConvRef::Existing(conv.id);
        if conv.channel != snap.address.channel || conv.address != snap.address.value {
            // Answered from another channel: the conversation goes on there.
            plan.push(Write::MoveConversation {
                conversation: conv.id,
            });
        }
        match engine::resume(
            &flow,
            &state,
            &person,
            Input::Reply(text),
            inbound.received_at,
        ) {
            Ok(t) => plan.apply(&flow, &person, t, OutboundKind::Reply)?,
            Err(e) => {
                // A flow that fails at run time must not swallow the caregiver's messages in a
                // retry loop: keep the message, close the conversation, and say so in the log.
                tracing::error!(flow = %flow.id, conversation = conv.id, error = %e, "flow failed; conversation closed");
                plan.push(Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Interrupted,
                    state: conv.state.clone(),
                    wake_at: None,
                });
            }
        }
        Ok(plan.finish())
    }

    /// Starts a flow for the snapshot's caregiver, or says why not.
    #[allow(clippy::type_complexity)]
    fn decide_start(
        &self,
        flow: &Arc<Flow>,
        rev: i64,
        vars: &BTreeMap<String, Value>,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<(Plan, Result<(), &'static str>), String> {
        let mut plan = PlanBuilder::new(self, snap, now);
        let Some(caregiver) = snap.caregiver.as_ref().filter(|c| c.active) else {
            return Ok((plan.finish(), Err("inactive")));
        };
        match snap.consent {
            ConsentStatus::OptedOut => return Ok((plan.finish(), Err("opted out"))),
            // Without consent on record, only the opt-in request may be sent.
            ConsentStatus::Unknown if flow.program != Program::Onboarding => {
                return Ok((plan.finish(), Err("no consent")));
            }
            _ => {}
        }
        if let Some(conv) = &snap.conversation {
            match flow.when_busy {
                WhenBusy::Skip => return Ok((plan.finish(), Err("already in a conversation"))),
                WhenBusy::Interrupt => plan.push(Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Interrupted,
                    state: conv.state.clone(),
                    wake_at: None,
                }),
            }
        }
        let person = person(caregiver);
        let mut all_vars = flow.vars.clone();
        all_vars.extend(vars.clone());
        let t = engine::start(flow, &person, all_vars, now).map_err(|e| e.to_string())?;
        plan.push(Write::CreateConversation {
            flow_id: flow.id.clone(),
            flow_rev: rev,
            state: Value::Null,
            wake_at: None,
        });
        plan.conv = ConvRef::New;
        plan.apply(flow, &person, t, OutboundKind::Program)?;
        Ok((plan.finish(), Ok(())))
    }

    fn decide_timer(&self, snap: &Snapshot, now: DateTime<Utc>) -> Result<Plan, String> {
        let mut plan = PlanBuilder::new(self, snap, now);
        let (Some(conv), Some(caregiver)) = (&snap.conversation, &snap.caregiver) else {
            return Ok(plan.finish());
        };
        let flow = self.flow_for(conv.flow_rev)?;
        let state: State = serde_json::from_value(conv.state.clone())
            .map_err(|e| format!("conversation {} has unreadable state: {e}", conv.id))?;
        plan.conv = ConvRef::Existing(conv.id);
        let Some(input) = state.due(now) else {
            // Woken early (a clock skew between instances): just keep the timers.
            plan.push(Write::UpdateConversation {
                conversation: plan.conv,
                status: ConversationStatus::Active,
                state: conv.state.clone(),
                wake_at: state.wake_at(),
            });
            return Ok(plan.finish());
        };
        let person = person(caregiver);
        if snap.consent == ConsentStatus::OptedOut || !caregiver.active {
            plan.push(Write::UpdateConversation {
                conversation: plan.conv,
                status: ConversationStatus::Interrupted,
                state: conv.state.clone(),
                wake_at: None,
            });
            return Ok(plan.finish());
        }
        let t = engine::resume(&flow, &state, &person, input, now).map_err(|e| e.to_string())?;
        plan.apply(&flow, &person, t, OutboundKind::Program)?;
        Ok(plan.finish())
    }
}

/// Where a program message to `c` goes: their Telegram chat or their phone, whichever they
/// prefer (an operator's `preferred`, else the channel they last wrote on, else SMS) among those
/// open to us (linked and opted in). When only one is open, that one; when neither, the phone,
/// where the start is then skipped for its reason (no consent, opted out).
pub fn reach(c: &Caregiver) -> Address {
    let sms = Address::new(Channel::Sms, c.phone.clone());
    let telegram = c
        .reach
        .telegram
        .as_ref()
        .filter(|(_, consent)| *consent == ConsentStatus::OptedIn)
        .map(|(chat, _)| Address::new(Channel::Telegram, chat.clone()));
    let sms_open = c.reach.sms == ConsentStatus::OptedIn;
    let wanted = c.reach.preferred.or(c.reach.last).unwrap_or(Channel::Sms);
    match telegram {
        Some(tg) if wanted == Channel::Telegram || !sms_open => tg,
        _ => sms,
    }
}

/// Where alerts to a supervisor go: their Telegram chat once they linked it (and have not
/// stopped it), else their phone.
pub fn supervisor_address(s: &Supervisor) -> Address {
    match &s.telegram {
        Some(chat) => Address::new(Channel::Telegram, chat.clone()),
        None => Address::new(Channel::Sms, s.phone.clone()),
    }
}

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
struct PlanBuilder<'a, S> {
    runner: &'a Runner<S>,
    snap: &'a Snapshot,
    now: DateTime<Utc>,
    conv: ConvRef,
    writes: Vec<Write>,
}

impl<'a, S: Store> PlanBuilder<'a, S> {
    fn new(runner: &'a Runner<S>, snap: &'a Snapshot, now: DateTime<Utc>) -> Self {
        PlanBuilder {
            runner,
            snap,
            now,
            conv: ConvRef::New,
            writes: Vec::new(),
        }
    }

    fn push(&mut self, w: Write) {
        self.writes.push(w);
    }

    fn finish(self) -> Plan {
        Plan {
            writes: self.writes,
        }
    }

    fn caregiver_id(&self) -> Option<i64> {
        self.snap.caregiver.as_ref().map(|c| c.id)
    }

    /// Queues a system template (consent replies, the stranger reply) to the snapshot's address.
    fn system(&mut self, lang: Lang, template: &str, kind: OutboundKind) -> Result<(), String> {
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
        let (body, _) = self
            .runner
            .catalog
            .templates
            .render(template, lang, &ctx)
            .map_err(|e| e.to_string())?;
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
    fn queue(
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

    fn context<'c>(
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
    fn apply(
        &mut self,
        flow: &Flow,
        start_person: &Person,
        t: Transition,
        kind: OutboundKind,
    ) -> Result<(), String> {
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
                        .render(&template, lang, &ctx)
                        .map_err(|e| e.to_string())?;
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
                } => {
                    let view = EscalationView {
                        id: None,
                        priority: priority.as_str().to_owned(),
                        reason: reason.clone(),
                        answer: answer.clone(),
                    };
                    // Alerts are read by the supervisor: English unless a translation is all
                    // there is.
                    let ctx = self.context(
                        &person,
                        &caregiver.last_name,
                        &answers,
                        &vars,
                        (&flow.id, &flow.name),
                        Some(view),
                    );
                    let (message, _) = self
                        .runner
                        .catalog
                        .templates
                        .render(&template, Lang::En, &ctx)
                        .map_err(|e| e.to_string())?;
                    self.push(Write::Escalation {
                        conversation: self.conv,
                        flow_id: flow.id.clone(),
                        step,
                        priority,
                        reason,
                        answer,
                        message: message.clone(),
                    });
                    if let Some(sup) = &caregiver.supervisor {
                        let sup_tz = quiet_hours::zone(&sup.timezone);
                        // Safety, injury, abuse, quitting: any hour. The rest waits for the
                        // supervisor's day.
                        let not_before = if priority == Priority::High {
                            self.now
                        } else {
                            self.runner
                                .settings
                                .supervisor_window
                                .next_allowed(self.now, sup_tz)
                        };
                        self.queue(
                            supervisor_address(sup),
                            None,
                            None,
                            OutboundKind::Alert,
                            message,
                            Vec::new(),
                            not_before,
                        );
                    }
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
                serde_json::to_value(prior.map(|mut s| {
                    s.answers = answers.clone();
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
