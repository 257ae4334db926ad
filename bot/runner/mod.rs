//! The runner: the one orchestrator between transports and the store. An inbound message goes
//! consent keywords -> engine -> plan, and the store applies the plan in the transaction that
//! recorded the message; flow starts and timers take the same path. Deciding is pure (it reads
//! a `Snapshot` and returns a `Plan`), so this file holds the domain rules and no SQL.

mod inbound;
mod plan;
mod start;
mod telegram;
mod timer;

use plan::PlanBuilder;
pub use plan::person;

pub use telegram::invite_code_hash as telegram_invite_hash;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::catalog::Catalog;
use crate::config::RunnerSettings;
use crate::domain::phone::masked_error;
use crate::flow::Flow;
use crate::flow::definition::Program;
use crate::model::{
    Audience, DecideError, Inbound, InboundOutcome, NewStart, Snapshot, StartOrigin, StartRow,
    StartSnapshot, StartStatus, Write,
};
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
            Err(StoreError::Decide(DecideError::MissingRevision(rev))) => {
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

    fn flow_for(&self, rev: i64) -> Result<Arc<Flow>, DecideError> {
        self.revisions
            .read()
            .expect("revision cache poisoned")
            .get(&rev)
            .cloned()
            .ok_or(DecideError::MissingRevision(rev))
    }
}
