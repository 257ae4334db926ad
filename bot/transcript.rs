//! Transcript tests (`carebot flows test`): conversations kept in `flows/tests/*.yaml`, each
//! played by one sample caregiver through the real [`Runner`] on a temporary SQLite store. Her
//! lines go in as inbound SMS, `wait` moves the clock and fires timers as the scheduler does,
//! and the transcript reads what was queued for her in the outbox; answers, escalations and
//! the outcome are read back from the store. So a transcript sees what she would: consent
//! words, the runner's plan, the rendered text and choices. Program staff read and write
//! these; CI runs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use sqlx::Connection as _;

use crate::catalog::{Catalog, sample_agency};
use crate::config::RunnerSettings;
use crate::domain::{Address, Channel, Lang};
use crate::flow::definition::parse_duration;
use crate::model::{Audience, CaregiverRecord, Inbound, SupervisorRecord};
use crate::runner::Runner;
use crate::store::{AnyStore, Store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscriptFile {
    flow: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    caregiver: CaregiverOverrides,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    transcript: Vec<Spanned<Line>>,
    #[serde(default)]
    expect: Expectations,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaregiverOverrides {
    first_name: Option<String>,
    branch: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    fields: BTreeMap<String, Value>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Bot(String),
    Me(String),
    Wait(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectations {
    #[serde(default)]
    answers: Option<Spanned<BTreeMap<String, Value>>>,
    #[serde(default)]
    escalations: Option<Spanned<Vec<ExpectedEscalation>>>,
    #[serde(default)]
    outcome: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectedEscalation {
    priority: String,
    reason: String,
}

/// Escalations as a transcript file writes them, so a failure reads like the file.
fn show(escalations: &[ExpectedEscalation]) -> String {
    let items: Vec<String> = escalations
        .iter()
        .map(|e| format!("{{ priority: {}, reason: {:?} }}", e.priority, e.reason))
        .collect();
    format!("[{}]", items.join(", "))
}

/// What did not match, at the line of the transcript file that expected it (0: the file as a
/// whole, when it could not be read or played).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: usize,
    pub message: String,
}

impl Failure {
    fn at(line: usize, message: impl Into<String>) -> Failure {
        Failure {
            line,
            message: message.into(),
        }
    }
}

/// The result of one transcript file.
#[derive(Debug)]
pub struct TranscriptResult {
    pub file: PathBuf,
    pub failures: Vec<Failure>,
}

impl TranscriptResult {
    /// Each failure as `file:line: message`, the form editors and CI logs link to.
    pub fn failure_lines(&self) -> Vec<String> {
        self.failures
            .iter()
            .map(|f| match f.line {
                0 => format!("{}: {}", self.file.display(), f.message),
                n => format!("{}:{n}: {}", self.file.display(), f.message),
            })
            .collect()
    }
}

/// When every transcript starts: Friday 2026-11-20, 10:00 in Chicago.
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T16:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// Runs every `*.yaml` in `dir` against the catalog, in file-name order.
pub async fn run_dir(catalog: &Arc<Catalog>, dir: &Path) -> Vec<TranscriptResult> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut results = Vec::with_capacity(files.len());
    for file in files {
        let failures = match std::fs::read_to_string(&file) {
            Ok(source) => run_one(catalog, &source).await,
            Err(e) => vec![Failure::at(0, format!("cannot read: {e}"))],
        };
        results.push(TranscriptResult { file, failures });
    }
    results
}

/// The sample caregiver's number; her supervisor is Dana Smith (S1).
const PHONE: &str = "+13125550123";

/// Runs one transcript; returns what did not match (empty when it passed).
pub async fn run_one(catalog: &Arc<Catalog>, source: &str) -> Vec<Failure> {
    let file: TranscriptFile = match serde_saphyr::from_str(source) {
        Ok(f) => f,
        Err(e) => return vec![Failure::at(0, e.without_snippet().to_string())],
    };
    let Some(loaded) = catalog.get(&file.flow) else {
        return vec![Failure::at(0, format!("no flow with id {:?}", file.flow))];
    };
    let lang: Lang = match file.language.as_deref().map(str::parse).transpose() {
        Ok(l) => l.unwrap_or(loaded.flow.language),
        Err(e) => return vec![Failure::at(0, e)],
    };
    let dir = ScratchDir::new();
    match play(catalog, &dir.0, file, lang).await {
        Ok(failures) => failures,
        Err(e) => vec![Failure::at(0, format!("could not play: {e:#}"))],
    }
}

/// A directory of its own for one transcript's database, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "carebot-flows-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A conversation being played: the caregiver's messages the transcript has not read yet.
struct Play {
    runner: Runner<AnyStore>,
    me: Address,
    /// How many of the messages queued for her were already taken into `pending`.
    taken: usize,
    pending: Vec<String>,
    failures: Vec<Failure>,
}

impl Play {
    /// Takes what was queued for her since the last look.
    async fn look(&mut self) -> anyhow::Result<()> {
        let queued = self.runner.store.outbound_to(&self.me).await?;
        let new: Vec<String> = queued
            .into_iter()
            .skip(self.taken)
            .map(|(_, body)| body)
            .collect();
        self.taken += new.len();
        self.pending.extend(new);
        Ok(())
    }

    fn unread(&mut self, line: usize, at: &str) {
        for msg in self.pending.drain(..) {
            self.failures.push(Failure::at(
                line,
                format!("{at}message not expected by the transcript: {msg:?}"),
            ));
        }
    }
}

// Long because it is one transcript played line by line (me, bot, wait) against the store;
// each kind of line is a short arm.
async fn play(
    catalog: &Arc<Catalog>,
    dir: &Path,
    file: TranscriptFile,
    lang: Lang,
) -> anyhow::Result<Vec<Failure>> {
    std::fs::create_dir_all(dir)?;
    let url = format!("sqlite://{}", dir.join("transcript.db").display());
    let store = AnyStore::connect(&url).await?;
    store.migrate().await?;
    store
        .upsert_supervisors(&[SupervisorRecord {
            external_id: "S1".into(),
            name: "Dana Smith".into(),
            phone: "+13125550100".into(),
            email: "dana@example.org".into(),
            branch: "Chicago North".into(),
            timezone: "America/Chicago".into(),
        }])
        .await?;
    let o = file.caregiver;
    store
        .upsert_caregivers(&[CaregiverRecord {
            external_id: "T1".into(),
            first_name: o.first_name.unwrap_or_else(|| "Maria".into()),
            last_name: "Gonzalez".into(),
            phone: PHONE.into(),
            language: lang,
            timezone: o.timezone.unwrap_or_else(|| "America/Chicago".into()),
            branch: o.branch.unwrap_or_else(|| "Chicago North".into()),
            supervisor_id: Some("S1".into()),
            groups: o.groups.unwrap_or_else(|| vec!["pulse".into()]),
            consent_at: NaiveDate::from_ymd_opt(2026, 1, 15),
        }])
        .await?;
    if !o.fields.is_empty() || !o.tags.is_empty() {
        // What earlier conversations would have recorded about her; the roster import has no
        // columns for it, so it is written straight into her row.
        let mut db = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("UPDATE caregivers SET fields = ?, tags = ? WHERE external_id = 'T1'")
            .bind(serde_json::to_string(&o.fields)?)
            .bind(serde_json::to_string(&o.tags)?)
            .execute(&mut db)
            .await?;
        db.close().await?;
    }
    let settings = RunnerSettings {
        agency: sample_agency(),
        ..RunnerSettings::default()
    };
    let runner = Runner::new(store, catalog.clone(), settings).await?;
    let mut now = start_time();
    let report = runner
        .start(
            &file.flow,
            &Audience::Phones(vec![PHONE.into()]),
            file.vars,
            now,
        )
        .await?;
    if report.started == 0 {
        return Ok(vec![Failure::at(
            0,
            format!("the flow did not start: skipped {:?}", report.skipped),
        )]);
    }
    let mut play = Play {
        runner,
        me: Address::new(Channel::Sms, PHONE),
        taken: 0,
        pending: Vec::new(),
        failures: Vec::new(),
    };
    play.look().await?;

    let mut last_line = 0;
    for (n, line) in file.transcript.iter().enumerate() {
        let at = line.referenced.line() as usize;
        last_line = at;
        match &line.value {
            Line::Bot(want) => {
                if play.pending.is_empty() {
                    play.failures.push(Failure::at(
                        at,
                        format!("expected a message containing {want:?}, got none"),
                    ));
                } else {
                    let got = play.pending.remove(0);
                    if !got.contains(want.as_str()) {
                        play.failures.push(Failure::at(
                            at,
                            format!("expected a message containing {want:?}, got {got:?}"),
                        ));
                    }
                }
            }
            Line::Me(reply) => {
                play.unread(at, "before this reply: ");
                play.runner
                    .handle_inbound(&Inbound {
                        address: play.me.clone(),
                        text: reply.clone(),
                        external_id: format!("transcript-{}", n + 1),
                        received_at: now,
                    })
                    .await?;
                play.look().await?;
            }
            Line::Wait(d) => {
                play.unread(at, "before this wait: ");
                let d = match parse_duration(d) {
                    Ok(d) => d,
                    Err(e) => {
                        play.failures.push(Failure::at(at, e));
                        return Ok(play.failures);
                    }
                };
                let until = now + chrono::Duration::from_std(d).unwrap_or_default();
                // Fire every timer that falls due on the way, at the moment it is due, as the
                // scheduler would: a reminder, then the expiry it leads to.
                loop {
                    let due = play.runner.store.due_conversations(until, 1).await?;
                    let Some(next) = due.first() else { break };
                    now = now.max(next.wake_at);
                    if play.runner.run_due(now).await? == 0 {
                        break;
                    }
                }
                now = until;
                play.look().await?;
            }
        }
    }
    play.unread(last_line, "after the last line: ");
    let mut failures = std::mem::take(&mut play.failures);
    failures.extend(check_results(&play.runner, &file.flow, &url, file.expect).await?);
    Ok(failures)
}

/// Compares what the store holds at the end with the transcript's `expect`.
async fn check_results(
    runner: &Runner<AnyStore>,
    flow: &str,
    url: &str,
    expect: Expectations,
) -> anyhow::Result<Vec<Failure>> {
    let mut failures = Vec::new();
    if let Some(want) = expect.answers {
        // In the order given: an answer given again replaces the first.
        let got: BTreeMap<String, Value> = runner
            .store
            .answers(Some(flow), None)
            .await?
            .into_iter()
            .map(|a| (a.key, a.answer))
            .collect();
        if want.value != got {
            failures.push(Failure::at(
                want.referenced.line() as usize,
                format!(
                    "answers: expected {}, got {}",
                    Value::from_iter(want.value),
                    Value::from_iter(got)
                ),
            ));
        }
    }
    if let Some(want) = expect.escalations {
        let got: Vec<ExpectedEscalation> = runner
            .store
            .escalations(None)
            .await?
            .into_iter()
            .map(|e| ExpectedEscalation {
                priority: e.priority,
                reason: e.reason,
            })
            .collect();
        if want.value != got {
            failures.push(Failure::at(
                want.referenced.line() as usize,
                format!(
                    "escalations: expected {}, got {}",
                    show(&want.value),
                    show(&got)
                ),
            ));
        }
    }
    if let Some(want) = expect.outcome {
        let mut db = sqlx::SqliteConnection::connect(url).await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM conversations WHERE flow_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(flow)
        .fetch_optional(&mut db)
        .await?;
        db.close().await?;
        let got = match status.as_deref() {
            Some("active") | None => "waiting",
            Some(other) => other,
        };
        if want.value != got {
            failures.push(Failure::at(
                want.referenced.line() as usize,
                format!("outcome: expected {}, got {got}", want.value),
            ));
        }
    }
    Ok(failures)
}
