//! Transcript tests (`carebot flows test`): conversations kept in `flows/tests/*.yaml` that play
//! a caregiver against the real engine and templates, move the clock, and check the messages,
//! answers, escalations and outcome. Program staff read and write these; CI runs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::catalog::{Catalog, sample_agency, sample_person};
use crate::domain::Lang;
use crate::flow::definition::parse_duration;
use crate::flow::engine::{self, Event, Input, Outcome, Person, State, Transition};
use crate::render::{CaregiverView, EscalationView, FlowView, MessageContext, SupervisorView};

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
    transcript: Vec<Line>,
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
    answers: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    escalations: Option<Vec<ExpectedEscalation>>,
    #[serde(default)]
    outcome: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectedEscalation {
    priority: String,
    reason: String,
}

/// The result of one transcript file.
#[derive(Debug)]
pub struct TranscriptResult {
    pub file: PathBuf,
    pub failures: Vec<String>,
}

/// When every transcript starts: Friday 2026-11-20, 10:00 in Chicago.
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T16:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// Runs every `*.yaml` in `dir` against the catalog.
pub fn run_dir(catalog: &Catalog, dir: &Path) -> Vec<TranscriptResult> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let failures = match std::fs::read_to_string(&file) {
                Ok(source) => run_one(catalog, &source),
                Err(e) => vec![format!("cannot read: {e}")],
            };
            TranscriptResult { file, failures }
        })
        .collect()
}

/// A conversation being played: the engine's state plus everything it produced.
struct Play<'a> {
    catalog: &'a Catalog,
    flow_id: String,
    person: Person,
    state: Option<State>,
    pending: Vec<String>,
    answers: BTreeMap<String, Value>,
    escalations: Vec<ExpectedEscalation>,
    outcome: Option<Outcome>,
    failures: Vec<String>,
}

/// Runs one transcript; returns what did not match (empty when it passed).
pub fn run_one(catalog: &Catalog, source: &str) -> Vec<String> {
    let file: TranscriptFile = match serde_saphyr::from_str(source) {
        Ok(f) => f,
        Err(e) => return vec![e.without_snippet().to_string()],
    };
    let Some(loaded) = catalog.get(&file.flow) else {
        return vec![format!("no flow with id {:?}", file.flow)];
    };
    let flow = loaded.flow.clone();
    let lang: Lang = match file.language.as_deref().map(str::parse).transpose() {
        Ok(l) => l.unwrap_or(flow.language),
        Err(e) => return vec![e],
    };
    let mut person = sample_person(lang);
    let o = file.caregiver;
    if let Some(v) = o.first_name {
        person.first_name = v;
    }
    if let Some(v) = o.branch {
        person.branch = v;
    }
    if let Some(v) = o.timezone {
        person.timezone = v;
    }
    if let Some(v) = o.groups {
        person.groups = v;
    }
    person.fields = o.fields;
    person.tags = o.tags;

    let mut vars = flow.vars.clone();
    vars.extend(file.vars);
    let mut now = start_time();
    let mut play = Play {
        catalog,
        flow_id: file.flow.clone(),
        person,
        state: None,
        pending: Vec::new(),
        answers: BTreeMap::new(),
        escalations: Vec::new(),
        outcome: None,
        failures: Vec::new(),
    };
    let t = engine::start(&flow, &play.person, vars.clone(), now);
    play.absorb(t, &vars);

    for (n, line) in file.transcript.iter().enumerate() {
        let at = format!("transcript line {}", n + 1);
        match line {
            Line::Bot(want) => {
                if play.pending.is_empty() {
                    play.failures.push(format!(
                        "{at}: expected a message containing {want:?}, got none"
                    ));
                } else {
                    let got = play.pending.remove(0);
                    if !got.contains(want.as_str()) {
                        play.failures.push(format!(
                            "{at}: expected a message containing {want:?}, got {got:?}"
                        ));
                    }
                }
            }
            Line::Me(reply) | Line::Wait(reply) => {
                play.unread(&at);
                if let Line::Wait(d) = line {
                    let d = match parse_duration(d) {
                        Ok(d) => d,
                        Err(e) => return vec![format!("{at}: {e}")],
                    };
                    let until = now + chrono::Duration::from_std(d).unwrap_or_default();
                    // Fire every timer that falls due on the way, at the moment it is due.
                    while let Some(state) = play.state.clone() {
                        let Some(wake) = state.wake_at().filter(|w| *w <= until) else {
                            break;
                        };
                        let input = state.due(wake).expect("due at its wake time");
                        let t = engine::resume(&flow, &state, &play.person, input, wake);
                        play.absorb(t, &vars);
                    }
                    now = until;
                } else if let Some(state) = play.state.clone() {
                    let t = engine::resume(&flow, &state, &play.person, Input::Reply(reply), now);
                    play.absorb(t, &vars);
                } else {
                    play.failures.push(format!(
                        "{at}: the conversation has ended; nobody reads {reply:?}"
                    ));
                }
            }
        }
    }
    play.unread("end of transcript");

    let expect = file.expect;
    if let Some(want) = expect.answers
        && want != play.answers
    {
        play.failures.push(format!(
            "answers: expected {}, got {}",
            Value::from_iter(want),
            Value::from_iter(play.answers.clone())
        ));
    }
    if let Some(want) = expect.escalations
        && want != play.escalations
    {
        play.failures.push(format!(
            "escalations: expected {want:?}, got {:?}",
            play.escalations
        ));
    }
    if let Some(want) = expect.outcome {
        let got = match play.outcome {
            Some(Outcome::Completed) => "completed",
            Some(Outcome::Expired) => "expired",
            None => "waiting",
        };
        if want != got {
            play.failures
                .push(format!("outcome: expected {want}, got {got}"));
        }
    }
    play.failures
}

impl Play<'_> {
    fn unread(&mut self, at: &str) {
        for msg in self.pending.drain(..) {
            self.failures.push(format!(
                "{at}: message not expected by the transcript: {msg:?}"
            ));
        }
    }

    fn absorb(
        &mut self,
        t: Result<Transition, engine::EngineError>,
        vars: &BTreeMap<String, Value>,
    ) {
        let t = match t {
            Ok(t) => t,
            Err(e) => {
                self.failures.push(format!("engine error: {e}"));
                return;
            }
        };
        let lang = t.state.as_ref().map_or(self.person.language, |s| s.lang);
        for event in &t.events {
            if let Event::Answer { key, value, .. } = event {
                self.answers.insert(key.clone(), value.clone());
            }
        }
        let agency = sample_agency();
        let flow = &self.catalog.get(&self.flow_id).expect("checked").flow;
        for event in t.events {
            let (template, escalation) = match event {
                Event::Send { template, .. } => (template, None),
                Event::Escalate {
                    priority,
                    template,
                    reason,
                    answer,
                    ..
                } => {
                    self.escalations.push(ExpectedEscalation {
                        priority: priority.as_str().to_owned(),
                        reason: reason.clone(),
                    });
                    (
                        template,
                        Some(EscalationView {
                            id: Some(1),
                            priority: priority.as_str().to_owned(),
                            reason,
                            answer,
                        }),
                    )
                }
                Event::SetField { name, value } => {
                    self.person.fields.insert(name, value);
                    continue;
                }
                Event::Tag { name, add } => {
                    self.person.tags.retain(|t| *t != name);
                    if add {
                        self.person.tags.push(name);
                    }
                    continue;
                }
                Event::End { outcome } => {
                    self.outcome = Some(outcome);
                    continue;
                }
                Event::Answer { .. } | Event::Wait { .. } | Event::OptIn => continue,
            };
            let is_alert = escalation.is_some();
            let ctx = MessageContext {
                caregiver: CaregiverView {
                    person: &self.person,
                    last_name: "Gonzalez",
                },
                agency: &agency,
                supervisor: SupervisorView {
                    name: "Dana Smith".into(),
                },
                answers: &self.answers,
                vars,
                flow: FlowView {
                    id: &flow.id,
                    name: &flow.name,
                },
                escalation,
            };
            match self.catalog.templates.render(&template, lang, &ctx) {
                // Alerts go to the supervisor, not into the caregiver's transcript.
                Ok(_) if is_alert => {}
                Ok((text, _)) => self.pending.push(text),
                Err(e) => self.failures.push(format!("render: {e}")),
            }
        }
        self.state = t.state;
    }
}
