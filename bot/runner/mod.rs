//! The runner: the one orchestrator between transports and the store. An inbound message goes
//! consent keywords -> engine -> plan, and the store applies the plan in the transaction that
//! recorded the message; flow starts and timers take the same path. Deciding is pure (it reads
//! a `Snapshot` and returns a `Plan`), so this file holds the domain rules and no SQL.

mod telegram;

pub use telegram::invite_code_hash as telegram_invite_hash;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::catalog::Catalog;
use crate::config::RunnerSettings;
use crate::consent::{self, Keyword, Reading};
use crate::domain::phone::masked_error;
use crate::domain::{Address, Lang};
use crate::flow::Flow;
use crate::flow::definition::{Program, WhenBusy, WhenCapped};
use crate::flow::engine::{self, Event, Input, Outcome, Person, State, Transition};
use crate::model::{
    Audience, Caregiver, ConsentStatus, ConvRef, ConversationStatus, Inbound, InboundOutcome,
    NewOutbound, NewStart, OutboundKind, Plan, Snapshot, StartOrigin, StartOutcome, StartRow,
    StartSnapshot, StartStatus, Write,
};
use crate::quiet_hours::{self};
use crate::render::{CaregiverView, EscalationView, FlowView, MessageContext, SupervisorView};
use crate::sms::segments;
use crate::store::{Store, StoreError};

/// What a conversation ended from outside its flow (STOP, a failure, another flow, an erase)
/// keeps of its engine state: not the answers so far (the named ones are in `answers`; an
/// anonymous one must not stay beside its caregiver) nor alerts waiting for a yes, which quote
/// them.
pub(crate) fn interrupted_state(state: &Value) -> Value {
    let mut state = state.clone();
    if let Some(fields) = state.as_object_mut() {
        // Emptied rather than removed: the state still reads as the engine's `State`.
        fields.insert("answers".into(), Value::Object(Default::default()));
        fields.remove("consent");
    }
    state
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
    /// The durable start this reports on.
    pub id: Option<i64>,
    pub started: usize,
    pub skipped: BTreeMap<String, usize>,
    /// Capped caregivers of a flow that waits: started when their weekly cap has room.
    pub waiting: usize,
}

impl From<&StartRow> for StartReport {
    fn from(row: &StartRow) -> Self {
        StartReport {
            id: Some(row.id),
            started: row.started as usize,
            skipped: row
                .skipped
                .iter()
                .map(|(k, v)| (k.clone(), *v as usize))
                .collect(),
            waiting: row.waiting as usize,
        }
    }
}

/// How many caregivers one start transaction handles: large enough that 100,000 caregivers
/// are 200 transactions, small enough that a reply arriving meanwhile waits milliseconds.
pub const START_BATCH: u32 = 500;

/// How long a runner holds a start between two batches. A runner that dies (kill -9) holds
/// it no longer than this; then the scheduler, or a re-run of the same `carebot start`,
/// takes over from the last committed batch.
pub const START_LEASE: chrono::Duration = chrono::Duration::seconds(5);

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
        let raised = std::sync::atomic::AtomicBool::new(false);
        let decide = |snap: &Snapshot| {
            let plan = self.decide_inbound(snap, inbound)?;
            if plan
                .writes
                .iter()
                .any(|w| matches!(w, Write::Escalation { .. }))
            {
                raised.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(plan)
        };
        let outcome = self
            .with_revisions(|| self.store.handle_inbound(inbound, &decide))
            .await?;
        // The escalation is committed with the answer and due at once; route it now rather
        // than at the scheduler's next tick. If this fails, the tick does it.
        if raised.load(std::sync::atomic::Ordering::Relaxed)
            && let Err(e) = self.run_due_escalations(inbound.received_at).await
        {
            tracing::error!(error = %masked_error(&e), "routing a new escalation failed; the scheduler will retry");
        }
        Ok(outcome)
    }

    /// Starts `flow_id` now for every caregiver in the audience: records the start durably,
    /// then runs it (see [`Runner::run_start`]). Returns what it did.
    pub async fn start(
        &self,
        flow_id: &str,
        audience: &Audience,
        vars: BTreeMap<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<StartReport, RunError> {
        let id = self
            .create_start(flow_id, audience, None, vars, now, StartOrigin::Cli, None)
            .await?;
        let row = self.run_start(id, &|| now, true, &|_| {}).await?;
        Ok(StartReport::from(&row))
    }

    /// Records a start of `flow_id` for `audience` (optionally only its caregivers in
    /// `timezone`) at `run_at`, without starting anyone yet.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_start(
        &self,
        flow_id: &str,
        audience: &Audience,
        timezone: Option<String>,
        vars: BTreeMap<String, Value>,
        run_at: DateTime<Utc>,
        origin: StartOrigin,
        dedupe_key: Option<String>,
    ) -> Result<i64, RunError> {
        Ok(self
            .store
            .create_start(
                &self.new_start(
                    flow_id, audience, timezone, vars, run_at, origin, dedupe_key,
                )?,
                run_at,
            )
            .await?)
    }

    /// The record of a start, ready for the store.
    #[allow(clippy::too_many_arguments)]
    pub fn new_start(
        &self,
        flow_id: &str,
        audience: &Audience,
        timezone: Option<String>,
        vars: BTreeMap<String, Value>,
        run_at: DateTime<Utc>,
        origin: StartOrigin,
        dedupe_key: Option<String>,
    ) -> Result<NewStart, RunError> {
        let loaded = self
            .catalog
            .get(flow_id)
            .ok_or_else(|| RunError::UnknownFlow(flow_id.to_owned()))?;
        Ok(NewStart {
            flow_id: flow_id.to_owned(),
            program: loaded.flow.program.as_str().to_owned(),
            priority: self.settings.pressure.rank(loaded.flow.program),
            audience: audience.clone(),
            timezone,
            vars,
            origin,
            dedupe_key,
            run_at,
        })
    }

    /// Runs durable start `id` until nothing more is due: takes its lease, handles its
    /// caregivers [`START_BATCH`] at a time (each batch one transaction that also moves the
    /// start's cursor), and calls `progress` after each batch. If another runner holds the
    /// start, waits for it to finish (or for its lease to lapse, and takes over) when
    /// `wait_for_others`, else returns at once. Returns the start as it stands.
    pub async fn run_start(
        &self,
        id: i64,
        clock: &(dyn Fn() -> DateTime<Utc> + Send + Sync),
        wait_for_others: bool,
        progress: &(dyn Fn(&StartRow) + Send + Sync),
    ) -> Result<StartRow, RunError> {
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        loop {
            let now = clock();
            if !self
                .store
                .claim_start(id, &owner, now, now + START_LEASE)
                .await?
            {
                let current = self.start_row(id).await?;
                progress(&current);
                if current.status == StartStatus::Done || !wait_for_others {
                    return Ok(current);
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                continue;
            }
            let start = self.start_row(id).await?;
            let flow = self
                .catalog
                .get(&start.flow_id)
                .ok_or_else(|| RunError::UnknownFlow(start.flow_id.clone()))?
                .flow
                .clone();
            let rev = self.current[&start.flow_id];
            // A capped caregiver waits at most a week past the start, then counts as capped.
            let give_up = start.run_at + crate::model::CAP_WINDOW;
            loop {
                let now = clock();
                let decide = |snap: &StartSnapshot| {
                    self.decide_start_target(&flow, rev, &start.vars, snap, now, give_up)
                };
                let batch = self
                    .with_revisions(|| {
                        self.store.run_start_batch(
                            id,
                            &owner,
                            now,
                            now + START_LEASE,
                            START_BATCH,
                            &decide,
                        )
                    })
                    .await?;
                if batch.lease_lost {
                    break;
                }
                if batch.handled > 0 || batch.idle {
                    progress(&self.start_row(id).await?);
                }
                if batch.idle {
                    self.store.release_start(id, &owner).await?;
                    return self.start_row(id).await;
                }
                // Let replies and timers waiting for the database go between two batches.
                tokio::task::yield_now().await;
            }
        }
    }

    async fn start_row(&self, id: i64) -> Result<StartRow, RunError> {
        self.store
            .start_row(id)
            .await?
            .ok_or_else(|| RunError::Store(StoreError::Corrupt(format!("no start {id}"))))
    }

    /// Runs every durable start due at `now`, highest priority first, then training
    /// assignments (in their program's place in that order). Returns how many conversations
    /// were started.
    pub async fn run_due_starts(&self, now: DateTime<Utc>) -> Result<usize, RunError> {
        let training_rank = self.settings.pressure.rank(Program::Training);
        let mut started = 0;
        let mut trained = false;
        let due = self.store.due_starts(now, 100).await?;
        for start in &due {
            if !trained && start.priority > training_rank {
                started += self.run_training(now).await?;
                trained = true;
            }
            let before = start.started as usize;
            let row = self.run_start(start.id, &|| now, false, &|_| {}).await?;
            started += (row.started as usize).saturating_sub(before);
        }
        if !trained {
            started += self.run_training(now).await?;
        }
        Ok(started)
    }

    /// Starts the training flow for assignments due at `now` (see
    /// [`Store::run_training_batch`]); returns how many conversations were started.
    pub async fn run_training(&self, now: DateTime<Utc>) -> Result<usize, RunError> {
        let mut started = 0;
        for (flow_id, loaded) in &self.catalog.flows {
            if loaded.flow.program != Program::Training {
                continue;
            }
            let flow = loaded.flow.clone();
            let rev = self.current[flow_id];
            let never = now + crate::model::CAP_WINDOW;
            let no_vars = BTreeMap::new();
            loop {
                let decide = |snap: &StartSnapshot| {
                    self.decide_start_target(&flow, rev, &no_vars, snap, now, never)
                };
                let batch = self
                    .with_revisions(|| {
                        self.store.run_training_batch(
                            flow_id,
                            flow.program.as_str(),
                            now,
                            START_BATCH,
                            &decide,
                        )
                    })
                    .await?;
                started += batch.started;
                if batch.started + batch.skipped.values().sum::<usize>() == 0 {
                    break;
                }
            }
        }
        Ok(started)
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
        let said_in = consent::language(text).and_then(|l| l.parse::<Lang>().ok());
        let lang = said_in
            .or(snap.caregiver.as_ref().map(|c| c.language))
            .unwrap_or(Lang::En);

        // Consent comes before any flow, for everyone who texts, on the roster or not. Whether
        // a question is waiting decides what a request in plain words does (see consent.rs):
        // it is the conversation the caregiver path below would hand this message to.
        let question_waiting =
            snap.conversation.is_some() && snap.caregiver.as_ref().is_some_and(|c| c.active);
        let reading = consent::read(text, question_waiting);
        let keyword = match reading {
            Reading::Keyword(keyword) => Some(keyword),
            // A clear request in plain words, with no question it could answer, is STOP.
            Reading::StopNow => Some(Keyword::OptOut),
            // YES is an answer to questions; it means START only for someone opted out.
            _ => (snap.consent == ConsentStatus::OptedOut && consent::is_yes(text))
                .then_some(Keyword::OptIn),
        };
        if consent::stops_everything(text) {
            plan.stop_everything(text, lang)?;
            return Ok(plan.finish());
        }
        match keyword {
            Some(Keyword::OptOut) => {
                if snap.consent != ConsentStatus::OptedOut {
                    plan.push(Write::Consent {
                        status: ConsentStatus::OptedOut,
                        // The ledger tells a keyword from plain words.
                        source: if reading == Reading::StopNow {
                            "request".into()
                        } else {
                            "keyword".into()
                        },
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
                            state: interrupted_state(&conv.state),
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
        // The question "do you want to stop?" is a reply, not a consent confirmation: it must
        // not reach someone who has opted out by the time it is sent, and the one message
        // allowed after STOP is STOP's own confirmation.
        let confirm = telegram::confirm_template(snap.address.channel);

        // A supervisor replying to an alert (ACK 14, CALL 14, NOTE 14 …, DONE 14). What is not
        // a reply to an alert goes on to the caregiver path when the sender is also a
        // caregiver in a conversation, and gets a one-line help otherwise.
        if let Some(desk) = &snap.desk
            && let Some(plan) = self.decide_desk(snap, desk, inbound)?
        {
            return Ok(plan);
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
        // A YES or NO to a shift offer is read before any flow, even mid-conversation (the
        // flow keeps waiting for its own answer); see shifts.rs.
        if let Some(shift_plan) = self.decide_shift_reply(snap, inbound, caregiver)? {
            return Ok(shift_plan);
        }
        let Some(conv) = &snap.conversation else {
            if reading == Reading::Confirm {
                // Might mean stop, with nothing to answer: ask rather than guess either way.
                plan.system(lang, confirm, OutboundKind::Reply)?;
                return Ok(plan.finish());
            }
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
                tracing::error!(flow = %flow.id, conversation = conv.id, error = %masked_error(&e), "flow failed; conversation closed");
                plan.push(Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Interrupted,
                    state: interrupted_state(&conv.state),
                    wake_at: None,
                });
            }
        }
        if reading == Reading::AnswerAndConfirm {
            // The answer is kept like any other; asked last, so that the question read last
            // is the one STOP answers.
            plan.system(lang, confirm, OutboundKind::Reply)?;
        }
        Ok(plan.finish())
    }

    /// Starts a flow for one caregiver of a durable start, or says why not: the start's
    /// variables and the caregiver's own (a training assignment's) are the flow's `vars`, and
    /// contact pressure applies (see [`Pressure`]). A capped caregiver of a flow that waits is
    /// tried again when their oldest counted conversation leaves the week, until `give_up`.
    pub fn decide_start_target(
        &self,
        flow: &Arc<Flow>,
        rev: i64,
        vars: &BTreeMap<String, Value>,
        target: &StartSnapshot,
        now: DateTime<Utc>,
        give_up: DateTime<Utc>,
    ) -> Result<(Plan, StartOutcome), String> {
        let cap = self.settings.pressure.weekly_cap;
        let capped = (flow.program != Program::Onboarding && cap > 0 && target.week_count >= cap)
            .then(|| {
                let room_at = target
                    .week_oldest
                    .map_or(now, |t| t + crate::model::CAP_WINDOW)
                    .max(now + chrono::Duration::minutes(1));
                match flow.when_capped {
                    WhenCapped::Wait if room_at <= give_up => {
                        StartOutcome::Wait { retry_at: room_at }
                    }
                    _ => StartOutcome::Skipped("capped".into()),
                }
            });
        let mut all_vars = vars.clone();
        all_vars.extend(target.vars.clone());
        self.decide_start(flow, rev, &all_vars, &target.snapshot, now, capped)
    }

    /// Starts a flow for the snapshot's caregiver, or says why not. `capped` is the outcome
    /// when the caregiver is at their weekly cap (checked after consent and busy).
    fn decide_start(
        &self,
        flow: &Arc<Flow>,
        rev: i64,
        vars: &BTreeMap<String, Value>,
        snap: &Snapshot,
        now: DateTime<Utc>,
        capped: Option<StartOutcome>,
    ) -> Result<(Plan, StartOutcome), String> {
        let skip = |reason: &str| StartOutcome::Skipped(reason.to_owned());
        let mut plan = PlanBuilder::new(self, snap, now);
        let Some(caregiver) = snap.caregiver.as_ref().filter(|c| c.active) else {
            return Ok((plan.finish(), skip("inactive")));
        };
        match snap.consent {
            ConsentStatus::OptedOut => return Ok((plan.finish(), skip("opted out"))),
            // Without consent on record, only the opt-in request may be sent.
            ConsentStatus::Unknown if flow.program != Program::Onboarding => {
                return Ok((plan.finish(), skip("no consent")));
            }
            _ => {}
        }
        if let Some(outcome) = capped {
            if snap.conversation.is_some() && flow.when_busy == WhenBusy::Skip {
                return Ok((plan.finish(), skip("already in a conversation")));
            }
            return Ok((plan.finish(), outcome));
        }
        if let Some(conv) = &snap.conversation {
            match flow.when_busy {
                WhenBusy::Skip => return Ok((plan.finish(), skip("already in a conversation"))),
                WhenBusy::Interrupt => plan.push(Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Interrupted,
                    state: interrupted_state(&conv.state),
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
        Ok((plan.finish(), StartOutcome::Started))
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
                state: interrupted_state(&conv.state),
                wake_at: None,
            });
            return Ok(plan.finish());
        }
        let t = engine::resume(&flow, &state, &person, input, now).map_err(|e| e.to_string())?;
        plan.apply(&flow, &person, t, OutboundKind::Program)?;
        Ok(plan.finish())
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
