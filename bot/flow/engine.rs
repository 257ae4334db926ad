//! The engine: `(flow, state, input, now) -> (new state, events)`. Pure and synchronous: it
//! reads only its arguments, so every path through a flow is testable with plain `#[test]`s and
//! the runner is free to apply the events in one transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use minijinja::Value as JinjaValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answer;
use super::definition::{Ask, Expect, Expr, Flow, Step, StepKind, Target};
use crate::domain::{Lang, Priority};

/// Where a conversation stands between two messages. Stored as JSON with the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The question being waited on.
    pub step: String,
    /// Replies at this step that did not fit.
    pub attempts: u32,
    /// Reminders sent for this step.
    pub reminders: u32,
    pub answers: BTreeMap<String, Value>,
    pub vars: BTreeMap<String, Value>,
    pub lang: Lang,
    pub remind_at: Option<DateTime<Utc>>,
    pub expire_at: Option<DateTime<Utc>>,
    /// Set while the caregiver is being asked whether their supervisor may know about an
    /// anonymous answer (or a rule with `ask_first`): the alerts wait for their yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentQuestion>,
}

/// Alerts waiting for the caregiver's permission, and where the flow goes on afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentQuestion {
    pub escalations: Vec<PendingEscalation>,
    /// The step after the answer that raised them (`None`: the end of the flow).
    pub then: Option<String>,
}

/// An escalation raised, not yet sent: it needs the caregiver's yes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEscalation {
    pub priority: Priority,
    pub template: String,
    pub reason: String,
    pub answer: String,
    pub when_taken_up: Option<String>,
}

/// How long a caregiver has to say whether their supervisor may know, when the question that
/// raised the alert has no expiry of its own. Silence is a no.
const CONSENT_WAIT: chrono::Duration = chrono::Duration::days(3);

impl State {
    /// When the scheduler must wake this conversation next.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        match (self.remind_at, self.expire_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What a wake-up at `now` means: expiry wins over a reminder due at the same time.
    pub fn due(&self, now: DateTime<Utc>) -> Option<Input<'static>> {
        if self.expire_at.is_some_and(|t| t <= now) {
            Some(Input::Expiry)
        } else if self.remind_at.is_some_and(|t| t <= now) {
            Some(Input::Reminder)
        } else {
            None
        }
    }
}

/// The caregiver as flows see them (`caregiver.*` in conditions and templates).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Person {
    pub first_name: String,
    pub language: Lang,
    pub branch: String,
    pub timezone: String,
    pub groups: Vec<String>,
    pub fields: BTreeMap<String, Value>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    Reply(&'a str),
    /// A reminder timer fired.
    Reminder,
    /// The question expired.
    Expiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Expired,
}

/// What the runner must do. Applied in order, in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Send a message rendered from `template`. `buttons` are `(label, reply)` pairs for
    /// channels that can show them; the typed reply still works.
    Send {
        step: String,
        template: String,
        buttons: Vec<(String, String)>,
        /// True for messages the caregiver did not just prompt (reminders).
        unprompted: bool,
    },
    Answer {
        step: String,
        key: String,
        value: Value,
        raw: String,
        anonymous: bool,
        /// The question takes free text (`expect: text`): the caregiver's own words, which
        /// retention removes after `CAREBOT_RETENTION_DAYS`, unlike scores and choices.
        free_text: bool,
    },
    /// The caregiver said yes to an `opt_in` question: record consent on this channel.
    OptIn,
    SetField {
        name: String,
        value: Value,
    },
    Tag {
        name: String,
        add: bool,
    },
    Escalate {
        step: String,
        priority: Priority,
        template: String,
        reason: String,
        answer: String,
        /// Sent to the caregiver when a supervisor takes the alert up.
        when_taken_up: Option<String>,
        /// The caregiver said yes to being named (an anonymous answer, or `ask_first`).
        consented: bool,
    },
    Wait {
        step: String,
        remind_at: Option<DateTime<Utc>>,
        expire_at: Option<DateTime<Utc>>,
    },
    End {
        outcome: Outcome,
    },
}

/// The result of one engine call: the state to store (`None` once the conversation ended) and
/// the events to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: Option<State>,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("step {step:?}: expression {expr:?} failed: {message}")]
    Expression {
        step: String,
        expr: String,
        message: String,
    },
    #[error("conversation is at step {0:?}, which is not a question in this flow version")]
    NotWaiting(String),
    #[error("flow ran {0} steps without stopping to ask anything: check for a loop")]
    Loop(usize),
}

impl From<EngineError> for crate::model::DecideError {
    fn from(e: EngineError) -> Self {
        crate::model::DecideError::Flow(Box::new(e))
    }
}

/// How many steps one call may run before it is judged a loop.
const MAX_STEPS_PER_CALL: usize = 200;

/// Starts `flow` for `person`. `vars` are the start's variables (training module, due date...).
pub fn start(
    flow: &Flow,
    person: &Person,
    vars: BTreeMap<String, Value>,
    now: DateTime<Utc>,
) -> Result<Transition, EngineError> {
    let run = Run {
        flow,
        person: person.clone(),
        state: State {
            step: String::new(),
            attempts: 0,
            reminders: 0,
            answers: BTreeMap::new(),
            vars,
            lang: if flow.languages.contains(&person.language) {
                person.language
            } else {
                flow.language
            },
            remind_at: None,
            expire_at: None,
            consent: None,
        },
        answer: Value::Null,
        events: Vec::new(),
        needs_consent: Vec::new(),
        now,
    };
    run.go(Target::Step(flow.start), false)
}

/// Resumes a waiting conversation with a reply or a timer.
pub fn resume(
    flow: &Flow,
    state: &State,
    person: &Person,
    input: Input<'_>,
    now: DateTime<Utc>,
) -> Result<Transition, EngineError> {
    let idx = flow
        .step_index(&state.step)
        .ok_or_else(|| EngineError::NotWaiting(state.step.clone()))?;
    let step = &flow.steps[idx];
    let StepKind::Ask(ask) = &step.kind else {
        return Err(EngineError::NotWaiting(state.step.clone()));
    };
    let mut run = Run {
        flow,
        person: person.clone(),
        state: state.clone(),
        answer: Value::Null,
        events: Vec::new(),
        needs_consent: Vec::new(),
        now,
    };
    if let Some(question) = run.state.consent.take() {
        return match input {
            Input::Reply(text) => run.consent_reply(step, question, text),
            // No reminder is set while asking; keep waiting.
            Input::Reminder => {
                run.state.consent = Some(question);
                Ok(run.finish_waiting())
            }
            // Silence is a no: nobody is told, and the conversation ends.
            Input::Expiry => {
                run.events.push(Event::End {
                    outcome: Outcome::Expired,
                });
                Ok(Transition {
                    state: None,
                    events: run.events,
                })
            }
        };
    }
    match input {
        Input::Reply(text) => run.reply(step, ask, text),
        Input::Reminder => {
            run.remind(step, ask);
            Ok(run.finish_waiting())
        }
        Input::Expiry => {
            let target = ask.wait.on_expire.unwrap_or(Target::End);
            if target == Target::End {
                run.events.push(Event::End {
                    outcome: Outcome::Expired,
                });
                return Ok(Transition {
                    state: None,
                    events: run.events,
                });
            }
            run.go(target, true)
        }
    }
}

struct Run<'f> {
    flow: &'f Flow,
    person: Person,
    state: State,
    /// The answer just given, for `answer` in expressions.
    answer: Value,
    events: Vec<Event>,
    /// Escalations this answer raised that must ask the caregiver first, with the question.
    needs_consent: Vec<(String, PendingEscalation)>,
    now: DateTime<Utc>,
}

impl Run<'_> {
    fn reply(mut self, step: &Step, ask: &Ask, text: &str) -> Result<Transition, EngineError> {
        let Some(value) = answer::parse(&ask.expect, text) else {
            self.state.attempts += 1;
            if self.state.attempts > ask.retries {
                return self.go(ask.fallback, false);
            }
            self.events.push(Event::Send {
                step: step.id.clone(),
                template: ask
                    .hint
                    .clone()
                    .unwrap_or_else(|| default_hint(&ask.expect).to_owned()),
                buttons: Vec::new(),
                unprompted: false,
            });
            // The timers keep running from the question: a wrong answer does not buy more time.
            return Ok(self.finish_waiting());
        };
        self.events.push(Event::Answer {
            step: step.id.clone(),
            key: ask.save_as.clone(),
            value: value.clone(),
            raw: text.trim().to_owned(),
            anonymous: ask.anonymous,
            free_text: matches!(ask.expect, Expect::Text),
        });
        if ask.opt_in && value == Value::Bool(true) {
            self.events.push(Event::OptIn);
        }
        self.state
            .answers
            .insert(ask.save_as.clone(), value.clone());
        self.answer = value;
        self.apply_effects(step, Some(text))?;
        let target = self.choose(step)?;
        if !self.needs_consent.is_empty() {
            return Ok(self.ask_consent(step, ask, target));
        }
        self.go(target, false)
    }

    /// Asks whether the caregiver's supervisor may know (the first rule's question, once for
    /// every alert this answer raised), and waits.
    fn ask_consent(mut self, step: &Step, ask: &Ask, then: Target) -> Transition {
        let pending = std::mem::take(&mut self.needs_consent);
        let template = pending[0].0.clone();
        self.events.push(Event::Send {
            step: step.id.clone(),
            template,
            buttons: buttons(&Expect::YesNo, self.state.lang),
            unprompted: false,
        });
        self.state.attempts = 0;
        self.state.remind_at = None;
        let wait = ask
            .wait
            .expire_after
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or(CONSENT_WAIT);
        self.state.expire_at = Some(self.now + wait);
        self.state.consent = Some(ConsentQuestion {
            escalations: pending.into_iter().map(|(_, e)| e).collect(),
            then: match then {
                Target::Step(i) => Some(self.flow.steps[i].id.clone()),
                Target::End => None,
            },
        });
        self.finish_waiting()
    }

    /// The caregiver's answer to "may we tell your supervisor?": a yes raises the waiting
    /// alerts, a no (or three replies that are neither) raises nothing; the flow goes on.
    fn consent_reply(
        mut self,
        step: &Step,
        question: ConsentQuestion,
        text: &str,
    ) -> Result<Transition, EngineError> {
        let yes = match answer::parse(&Expect::YesNo, text) {
            Some(Value::Bool(yes)) => yes,
            _ => {
                self.state.attempts += 1;
                if self.state.attempts <= 2 {
                    self.events.push(Event::Send {
                        step: step.id.clone(),
                        template: default_hint(&Expect::YesNo).to_owned(),
                        buttons: Vec::new(),
                        unprompted: false,
                    });
                    self.state.consent = Some(question);
                    return Ok(self.finish_waiting());
                }
                false
            }
        };
        if yes {
            for e in question.escalations {
                self.events.push(Event::Escalate {
                    step: step.id.clone(),
                    priority: e.priority,
                    template: e.template,
                    reason: e.reason,
                    answer: e.answer,
                    when_taken_up: e.when_taken_up,
                    consented: true,
                });
            }
        }
        let then = match &question.then {
            Some(id) => self.flow.step_index(id).map_or(Target::End, Target::Step),
            None => Target::End,
        };
        self.go(then, false)
    }

    fn remind(&mut self, step: &Step, ask: &Ask) {
        self.events.push(Event::Send {
            step: step.id.clone(),
            template: ask
                .wait
                .remind
                .clone()
                .unwrap_or_else(|| ask.template.clone()),
            buttons: buttons(&ask.expect, self.state.lang),
            unprompted: true,
        });
        self.state.reminders += 1;
        // Each reminder delay counts from the previous message; the last delay repeats no more.
        self.state.remind_at = ask
            .wait
            .remind_after
            .get(self.state.reminders as usize)
            .map(|d| self.now + chrono::Duration::from_std(*d).unwrap_or_default());
    }

    /// Runs from `target` until the flow asks something (and waits) or ends.
    fn go(mut self, mut target: Target, expired: bool) -> Result<Transition, EngineError> {
        for _ in 0..MAX_STEPS_PER_CALL {
            let Target::Step(i) = target else {
                self.events.push(Event::End {
                    outcome: if expired {
                        Outcome::Expired
                    } else {
                        Outcome::Completed
                    },
                });
                return Ok(Transition {
                    state: None,
                    events: self.events,
                });
            };
            let step = &self.flow.steps[i];
            match &step.kind {
                StepKind::Ask(ask) => {
                    self.ask(step, ask)?;
                    return Ok(self.finish_waiting());
                }
                StepKind::Send { template } => {
                    self.events.push(Event::Send {
                        step: step.id.clone(),
                        template: template.clone(),
                        buttons: Vec::new(),
                        unprompted: false,
                    });
                    self.apply_effects(step, None)?;
                }
                StepKind::Logic => self.apply_effects(step, None)?,
            }
            target = self.choose(step)?;
        }
        Err(EngineError::Loop(MAX_STEPS_PER_CALL))
    }

    fn ask(&mut self, step: &Step, ask: &Ask) -> Result<(), EngineError> {
        self.events.push(Event::Send {
            step: step.id.clone(),
            template: ask.template.clone(),
            buttons: buttons(&ask.expect, self.state.lang),
            unprompted: false,
        });
        self.state.step = step.id.clone();
        self.state.attempts = 0;
        self.state.reminders = 0;
        let after =
            |d: &std::time::Duration| self.now + chrono::Duration::from_std(*d).unwrap_or_default();
        self.state.remind_at = ask.wait.remind_after.first().map(after);
        self.state.expire_at = match (&ask.wait.expire_after, &ask.wait.expire_at) {
            (Some(d), _) => Some(after(d)),
            (None, Some(expr)) => {
                let v = self.eval(step, expr)?;
                Some(self.instant(step, expr, &v)?)
            }
            (None, None) => None,
        };
        Ok(())
    }

    fn finish_waiting(mut self) -> Transition {
        self.events.push(Event::Wait {
            step: self.state.step.clone(),
            remind_at: self.state.remind_at,
            expire_at: self.state.expire_at,
        });
        Transition {
            state: Some(self.state),
            events: self.events,
        }
    }

    /// Sets fields and tags and raises escalations: after the answer on a question, on entry
    /// elsewhere. Escalations are raised here, the moment the answer is recorded.
    fn apply_effects(&mut self, step: &Step, reply: Option<&str>) -> Result<(), EngineError> {
        for (name, expr) in &step.set {
            let value = self.eval(step, expr)?;
            let json = serde_json::to_value(&value).unwrap_or(Value::Null);
            self.person.fields.insert(name.clone(), json.clone());
            self.events.push(Event::SetField {
                name: name.clone(),
                value: json,
            });
        }
        for name in &step.tag {
            if !self.person.tags.contains(name) {
                self.person.tags.push(name.clone());
            }
            self.events.push(Event::Tag {
                name: name.clone(),
                add: true,
            });
        }
        for name in &step.untag {
            self.person.tags.retain(|t| t != name);
            self.events.push(Event::Tag {
                name: name.clone(),
                add: false,
            });
        }
        for rule in &step.escalate {
            let by_condition = match &rule.condition {
                Some(c) => self.eval(step, c)?.is_true(),
                None => true,
            };
            let by_words = match (&rule.words, reply) {
                (Some(words), Some(text)) => answer::contains_any_word(text, words),
                (Some(_), None) => false,
                (None, _) => true,
            };
            if by_condition && by_words {
                let answer = reply.map(|r| r.trim().to_owned()).unwrap_or_default();
                match &rule.ask_first {
                    // Raised only if the caregiver says yes: see `ask_consent`.
                    Some(question) if reply.is_some() => self.needs_consent.push((
                        question.clone(),
                        PendingEscalation {
                            priority: rule.priority,
                            template: rule.template.clone(),
                            reason: rule.reason.clone(),
                            answer,
                            when_taken_up: rule.when_taken_up.clone(),
                        },
                    )),
                    _ => self.events.push(Event::Escalate {
                        step: step.id.clone(),
                        priority: rule.priority,
                        template: rule.template.clone(),
                        reason: rule.reason.clone(),
                        answer,
                        when_taken_up: rule.when_taken_up.clone(),
                        consented: false,
                    }),
                }
            }
        }
        Ok(())
    }

    fn choose(&self, step: &Step) -> Result<Target, EngineError> {
        for (cond, target) in &step.branches {
            if self.eval(step, cond)?.is_true() {
                return Ok(*target);
            }
        }
        Ok(step.next)
    }

    fn eval(&self, step: &Step, expr: &Expr) -> Result<JinjaValue, EngineError> {
        let ctx = ExprContext {
            answer: &self.answer,
            answers: &self.state.answers,
            caregiver: &self.person,
            vars: &self.state.vars,
            now: self.now,
        };
        expr.compiled
            .eval(JinjaValue::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| EngineError::Expression {
                step: step.id.clone(),
                expr: expr.source.clone(),
                message: e.to_string(),
            })
    }

    /// Reads an `expire_at` value: a date means the end of that day where the caregiver lives.
    fn instant(
        &self,
        step: &Step,
        expr: &Expr,
        v: &JinjaValue,
    ) -> Result<DateTime<Utc>, EngineError> {
        let text = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        let fail = |message: String| EngineError::Expression {
            step: step.id.clone(),
            expr: expr.source.clone(),
            message,
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
            return Ok(t.with_timezone(&Utc));
        }
        // Not quoted: the value may be what a caregiver typed, and this error ends up in the
        // log (the runner closes the conversation and says why); the step and the expression
        // are enough to find it.
        let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
            fail("the value it gave is neither a date (YYYY-MM-DD) nor an RFC 3339 time".into())
        })?;
        let tz: chrono_tz::Tz = self.person.timezone.parse().unwrap_or(chrono_tz::UTC);
        let end_of_day = date.and_hms_opt(23, 59, 59).expect("valid time");
        tz.from_local_datetime(&end_of_day)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| {
                fail(format!(
                    "{text:?} does not exist in {}",
                    self.person.timezone
                ))
            })
    }
}

#[derive(Serialize)]
struct ExprContext<'a> {
    answer: &'a Value,
    answers: &'a BTreeMap<String, Value>,
    caregiver: &'a Person,
    vars: &'a BTreeMap<String, Value>,
    now: DateTime<Utc>,
}

/// The re-ask sent when a question has no `hint` of its own.
pub fn default_hint(expect: &Expect) -> &'static str {
    match expect {
        Expect::Choice(_) => "system/hint_choice",
        Expect::Scale { .. } => "system/hint_scale",
        Expect::Number { .. } => "system/hint_number",
        Expect::YesNo => "system/hint_yes_no",
        Expect::Text => "system/hint_text",
        Expect::Keyword(_) => "system/hint_keyword",
    }
}

/// Buttons for channels that can show them; the reply each sends is what a typed answer
/// would be, so taps and texts take the same path.
fn buttons(expect: &Expect, lang: Lang) -> Vec<(String, String)> {
    match expect {
        Expect::Choice(options) => options
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let label = o
                    .label
                    .get(&lang)
                    .or_else(|| o.label.get(&Lang::En))
                    .cloned()
                    .unwrap_or_else(|| o.value.clone());
                (format!("{}. {label}", i + 1), (i + 1).to_string())
            })
            .collect(),
        Expect::Scale { min, max } => (*min..=*max)
            .map(|n| (n.to_string(), n.to_string()))
            .collect(),
        Expect::YesNo => {
            let (yes, no) = match lang {
                Lang::En => ("Yes", "No"),
                Lang::Es => ("Sí", "No"),
            };
            vec![(yes.into(), "yes".into()), (no.into(), "no".into())]
        }
        _ => Vec::new(),
    }
}
