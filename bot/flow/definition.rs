//! Flow files (`flows/*.yaml`) as program staff write them, and `Flow::parse`, which turns one
//! into a checked, ready-to-run flow or into every problem it has, each with its line and column.
//! Templates are checked elsewhere (`check.rs`): this module knows only the flow file itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use minijinja::{Environment, Expression, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::domain::{Lang, Priority};

// ---------------------------------------------------------------------------------------------
// What staff write (serde shapes). Unknown keys are errors so that a typo never goes unnoticed.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowFile {
    id: Spanned<String>,
    name: String,
    version: Spanned<i64>,
    #[serde(default)]
    language: Option<Spanned<String>>,
    #[serde(default)]
    languages: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    program: Option<Spanned<String>>,
    #[serde(default)]
    when_busy: Option<Spanned<String>>,
    #[serde(default)]
    when_capped: Option<Spanned<String>>,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    schedule: Option<Spanned<ScheduleFile>>,
    #[serde(default)]
    start: Option<Spanned<String>>,
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    cron: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    id: Spanned<String>,
    #[serde(default)]
    send: Option<Spanned<String>>,
    #[serde(default)]
    ask: Option<Spanned<String>>,
    #[serde(default)]
    expect: Option<Spanned<ExpectFile>>,
    #[serde(default)]
    save_as: Option<String>,
    #[serde(default)]
    hint: Option<Spanned<String>>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    fallback: Option<Spanned<String>>,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    opt_in: bool,
    #[serde(default)]
    wait: Option<WaitFile>,
    #[serde(default)]
    set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    tag: Vec<String>,
    #[serde(default)]
    untag: Vec<String>,
    #[serde(default)]
    escalate: Vec<Spanned<EscalateFile>>,
    #[serde(default)]
    branch: Vec<BranchFile>,
    #[serde(default)]
    next: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ExpectFile {
    Choice(Vec<ChoiceFile>),
    Scale {
        min: i64,
        max: i64,
    },
    Number {
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    YesNo,
    Text,
    Keyword(BTreeMap<String, Vec<String>>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceFile {
    value: String,
    #[serde(default)]
    label: BTreeMap<String, String>,
    #[serde(default)]
    synonyms: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitFile {
    #[serde(default)]
    remind_after: Option<Spanned<DurationList>>,
    #[serde(default)]
    remind: Option<Spanned<String>>,
    #[serde(default)]
    expire_after: Option<Spanned<String>>,
    #[serde(default)]
    expire_at: Option<Spanned<String>>,
    #[serde(default)]
    on_expire: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateFile {
    #[serde(default, rename = "if")]
    condition: Option<Spanned<String>>,
    #[serde(default)]
    words: Option<WordsFile>,
    priority: Spanned<String>,
    template: Spanned<String>,
    reason: String,
    #[serde(default)]
    ask_first: Option<Spanned<String>>,
    #[serde(default)]
    when_taken_up: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WordsFile {
    Named(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchFile {
    #[serde(rename = "if")]
    condition: Spanned<String>,
    goto: Spanned<String>,
}

// ---------------------------------------------------------------------------------------------
// What the engine runs.

/// A position in a flow file, 1-based, for messages staff can act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Self {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// A checked flow, ready to run.
#[derive(Debug)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub language: Lang,
    pub languages: Vec<Lang>,
    pub program: Program,
    pub when_busy: WhenBusy,
    /// What a start does for a caregiver at the weekly cap of program conversations.
    pub when_capped: WhenCapped,
    /// Variables a start provides (training module, due date...), with sample values that
    /// `flows check` renders templates against.
    pub vars: BTreeMap<String, serde_json::Value>,
    pub schedule: Option<Schedule>,
    pub start: usize,
    pub steps: Vec<Step>,
    index: HashMap<String, usize>,
}

/// Which program a flow belongs to: decides priority when contact pressure caps starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    Onboarding,
    Shift,
    Training,
    Benefits,
    Survey,
}

impl Program {
    pub fn as_str(self) -> &'static str {
        match self {
            Program::Onboarding => "onboarding",
            Program::Shift => "shift",
            Program::Training => "training",
            Program::Benefits => "benefits",
            Program::Survey => "survey",
        }
    }

    /// The programs that compete for a caregiver's weekly cap (onboarding is never capped).
    pub const CAPPED: [Program; 4] = [
        Program::Shift,
        Program::Training,
        Program::Benefits,
        Program::Survey,
    ];
}

impl std::str::FromStr for Program {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Program::Onboarding,
            Program::Shift,
            Program::Training,
            Program::Benefits,
            Program::Survey,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            format!("unknown program {s:?} (onboarding, shift, training, benefits, survey)")
        })
    }
}

/// What a start does for a caregiver who already had their weekly cap of program conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenCapped {
    /// Do not start; counted as skipped ("capped").
    Skip,
    /// Start when the cap has room again (within a week of the start), counted as capped
    /// meanwhile.
    Wait,
}

/// What starting this flow does to a caregiver who is already in a conversation on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenBusy {
    /// Do not start now; counted as skipped ("already in a conversation").
    Skip,
    /// End the running conversation (marked interrupted) and start this one.
    Interrupt,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub to: String,
    pub pos: Pos,
}

#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub pos: Pos,
    pub kind: StepKind,
    /// Caregiver fields to set, evaluated after the answer (ask) or on entry (other steps).
    pub set: Vec<(String, Expr)>,
    pub tag: Vec<String>,
    pub untag: Vec<String>,
    pub escalate: Vec<Escalate>,
    pub branches: Vec<(Expr, Target)>,
    pub next: Target,
}

#[derive(Debug)]
pub enum StepKind {
    /// Sends a message and moves on.
    Send { template: String },
    /// Asks a question and waits for the answer.
    Ask(Box<Ask>),
    /// Only sets, escalates or branches.
    Logic,
}

#[derive(Debug)]
pub struct Ask {
    pub template: String,
    pub expect: Expect,
    pub save_as: String,
    pub hint: Option<String>,
    pub retries: u32,
    pub fallback: Target,
    pub anonymous: bool,
    /// A yes here is the caregiver's opt-in on this channel (the welcome flow's question).
    pub opt_in: bool,
    pub wait: Wait,
}

#[derive(Debug, Default)]
pub struct Wait {
    /// Delays between reminders, each counted from the previous message.
    pub remind_after: Vec<Duration>,
    pub remind: Option<String>,
    pub expire_after: Option<Duration>,
    /// An expression giving a date (YYYY-MM-DD, end of that day in the caregiver's time zone)
    /// or an RFC 3339 instant.
    pub expire_at: Option<Expr>,
    pub on_expire: Option<Target>,
}

#[derive(Debug, Clone)]
pub enum Expect {
    Choice(Vec<Choice>),
    Scale { min: i64, max: i64 },
    Number { min: Option<f64>, max: Option<f64> },
    YesNo,
    Text,
    Keyword(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: BTreeMap<Lang, String>,
    /// Folded words that pick this option, in every language.
    pub synonyms: Vec<String>,
}

#[derive(Debug)]
pub struct Escalate {
    pub condition: Option<Expr>,
    pub words: Option<Vec<String>>,
    pub priority: Priority,
    pub template: String,
    pub reason: String,
    /// The question that asks the caregiver whether their supervisor may know; the alert is
    /// raised only on a yes. Always set on an anonymous question (the default is
    /// [`ESCALATION_CONSENT`]).
    pub ask_first: Option<String>,
    /// Sent to the caregiver when a supervisor takes the alert up (ACK or CALL).
    pub when_taken_up: Option<String>,
}

/// The question an anonymous answer's escalation asks first, unless the rule names its own.
pub const ESCALATION_CONSENT: &str = "system/escalation_consent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Step(usize),
    End,
}

/// A compiled minijinja expression, kept with its source for messages.
pub struct Expr {
    pub source: String,
    pub compiled: Expression<'static, 'static>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// Expressions need no templates, so one shared environment serves every flow; strict so that
/// a misspelled variable is an error rather than a silently false condition.
pub(crate) static EXPRESSIONS: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

/// Words that raise a worrying-words escalation when a flow says `words: worrying`. Folded
/// (lowercase, no accents) and matched on whole words, so "quite" never matches "quit".
pub const WORRYING_WORDS: &[&str] = &[
    // English
    "quit",
    "quitting",
    "resign",
    "resigning",
    "hurt",
    "hurts",
    "injured",
    "injury",
    "injuries",
    "unsafe",
    "harass",
    "harassed",
    "harassing",
    "harassment",
    "abuse",
    "abused",
    "abusive",
    "assault",
    "assaulted",
    "threatened",
    "threatens",
    // Spanish
    "renuncio",
    "renunciar",
    "renuncia",
    "lastimada",
    "lastimado",
    "lastime",
    "herida",
    "herido",
    "lesion",
    "lesionada",
    "lesionado",
    "insegura",
    "inseguro",
    "acoso",
    "acosa",
    "acosada",
    "acosado",
    "abuso",
    "abusa",
    "abusiva",
    "abusivo",
    "maltrato",
    "amenaza",
    "amenazada",
    "amenazado",
    "agredida",
    "agredido",
];

// ---------------------------------------------------------------------------------------------
// Problems

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong (or worth a look) in a flow or template file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// A flow that cannot be loaded, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{} has {} error(s)", .file, .problems.iter().filter(|p| p.severity == Severity::Error).count())]
pub struct FlowError {
    pub file: String,
    pub problems: Vec<Problem>,
}

struct Problems<'a> {
    file: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Error, message.into());
    }
    fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Warning, message.into());
    }
    fn push(&mut self, pos: Pos, severity: Severity, message: String) {
        self.list.push(Problem {
            file: self.file.to_owned(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            severity,
            message,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing and checking

/// The names an expression may use; `flows check` evaluates each against a sample of these.
pub const EXPRESSION_NAMES: &[&str] = &["answer", "answers", "caregiver", "vars", "now"];

impl Flow {
    /// Parses and checks one flow file. Returns the flow with its warnings, or every problem.
    pub fn parse(file: &str, source: &str) -> Result<(Flow, Vec<Problem>), FlowError> {
        let mut problems = Problems {
            file,
            list: Vec::new(),
        };
        let raw: FlowFile = match serde_saphyr::from_str(source) {
            Ok(raw) => raw,
            Err(err) => {
                let pos = err
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        column: l.column(),
                    })
                    .unwrap_or_default();
                let message = first_line(&err.without_snippet().to_string());
                problems.error(pos, message);
                return Err(FlowError {
                    file: file.to_owned(),
                    problems: problems.list,
                });
            }
        };
        let flow = build(raw, &mut problems);
        if problems.list.iter().any(|p| p.severity == Severity::Error) {
            problems.list.sort();
            return Err(FlowError {
                file: file.to_owned(),
                problems: problems.list,
            });
        }
        let flow = flow.expect("a flow without errors is built");
        Ok((flow, problems.list))
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index.get(id).map(|&i| &self.steps[i])
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Every template the flow names, with where it is named.
    /// The answer names (`save_as`) of the questions marked anonymous.
    pub fn anonymous_keys(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Ask(ask) if ask.anonymous => Some(ask.save_as.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn templates(&self) -> Vec<(String, Pos)> {
        let mut out = Vec::new();
        for step in &self.steps {
            match &step.kind {
                StepKind::Send { template } => out.push((template.clone(), step.pos)),
                StepKind::Ask(ask) => {
                    out.push((ask.template.clone(), step.pos));
                    if let Some(h) = &ask.hint {
                        out.push((h.clone(), step.pos));
                    }
                    if let Some(r) = &ask.wait.remind {
                        out.push((r.clone(), step.pos));
                    }
                }
                StepKind::Logic => {}
            }
            for e in &step.escalate {
                out.push((e.template.clone(), step.pos));
                out.extend(e.ask_first.iter().map(|t| (t.clone(), step.pos)));
                out.extend(e.when_taken_up.iter().map(|t| (t.clone(), step.pos)));
            }
        }
        out
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("invalid YAML").trim().to_owned()
}

// Long because it checks a flow file's fields in the order they are written, each check a
// few lines pushing a problem at its position; split up, the order a reader follows is lost.
fn build(raw: FlowFile, p: &mut Problems<'_>) -> Option<Flow> {
    let id_pos = Pos::from(&raw.id);
    if !is_identifier(&raw.id.value) {
        p.error(
            id_pos,
            format!(
                "flow id {:?} must be lowercase letters, digits and dashes",
                raw.id.value
            ),
        );
    }
    if raw.version.value < 1 {
        p.error(Pos::from(&raw.version), "version must be 1 or more");
    }
    let language = match &raw.language {
        None => Lang::En,
        Some(l) => l.value.parse().unwrap_or_else(|e: String| {
            p.error(Pos::from(l), e);
            Lang::En
        }),
    };
    let languages = match &raw.languages {
        None => Lang::ALL.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for code in &list.value {
                match code.parse::<Lang>() {
                    Ok(l) => out.push(l),
                    Err(e) => p.error(Pos::from(list), e),
                }
            }
            if !out.contains(&language) {
                p.error(
                    Pos::from(list),
                    format!("languages must include the default language {language}"),
                );
            }
            out
        }
    };
    let program = match &raw.program {
        None => Program::Survey,
        Some(s) => match s.value.as_str() {
            "onboarding" => Program::Onboarding,
            "shift" => Program::Shift,
            "training" => Program::Training,
            "benefits" => Program::Benefits,
            "survey" => Program::Survey,
            other => {
                p.error(
                    Pos::from(s),
                    format!(
                        "unknown program {other:?} (onboarding, shift, training, benefits, survey)"
                    ),
                );
                Program::Survey
            }
        },
    };
    let when_busy = match &raw.when_busy {
        None => WhenBusy::Skip,
        Some(s) => match s.value.as_str() {
            "skip" => WhenBusy::Skip,
            "interrupt" => WhenBusy::Interrupt,
            other => {
                p.error(
                    Pos::from(s),
                    format!("unknown when_busy {other:?} (skip or interrupt)"),
                );
                WhenBusy::Skip
            }
        },
    };
    let when_capped = match &raw.when_capped {
        None => WhenCapped::Skip,
        Some(s) => match s.value.as_str() {
            "skip" => WhenCapped::Skip,
            "wait" => WhenCapped::Wait,
            other => {
                p.error(
                    Pos::from(s),
                    format!("unknown when_capped {other:?} (skip or wait)"),
                );
                WhenCapped::Skip
            }
        },
    };
    let schedule = raw.schedule.as_ref().map(|s| {
        if let Err(e) = parse_cron(&s.value.cron.value) {
            p.error(Pos::from(&s.value.cron), e);
        }
        if let Err(e) = check_schedule_audience(&s.value.to.value) {
            p.error(Pos::from(&s.value.to), e);
        }
        Schedule {
            cron: s.value.cron.value.clone(),
            to: s.value.to.value.clone(),
            pos: Pos::from(&s.value.cron),
        }
    });

    // Step ids first, so references can be resolved in one pass.
    let mut index = HashMap::new();
    for (i, step) in raw.steps.iter().enumerate() {
        let pos = Pos::from(&step.id);
        if step.id.value == "end" {
            p.error(pos, "\"end\" is reserved: it means the end of the flow");
        } else if !is_identifier(&step.id.value.replace('_', "-")) {
            p.error(
                pos,
                format!(
                    "step id {:?} must be lowercase letters, digits, dashes or underscores",
                    step.id.value
                ),
            );
        }
        if index.insert(step.id.value.clone(), i).is_some() {
            p.error(pos, format!("duplicate step id {:?}", step.id.value));
        }
    }
    if raw.steps.is_empty() {
        p.error(id_pos, "a flow needs at least one step");
        return None;
    }
    let resolve = |p: &mut Problems<'_>, s: &Spanned<String>| -> Target {
        if s.value == "end" {
            Target::End
        } else if let Some(&i) = index.get(&s.value) {
            Target::Step(i)
        } else {
            p.error(Pos::from(s), format!("unknown step {:?}", s.value));
            Target::End
        }
    };
    let start = match &raw.start {
        None => 0,
        Some(s) => match resolve(p, s) {
            Target::Step(i) => i,
            Target::End => 0,
        },
    };

    let mut steps = Vec::with_capacity(raw.steps.len());
    let mut save_keys: HashMap<String, Pos> = HashMap::new();
    for (i, s) in raw.steps.iter().enumerate() {
        let pos = Pos::from(&s.id);
        let next = match &s.next {
            Some(n) => resolve(p, n),
            // Without `next`, a step leads to the one written after it, and the last one ends.
            None if i + 1 < raw.steps.len() => Target::Step(i + 1),
            None => Target::End,
        };
        let kind = match (&s.send, &s.ask) {
            (Some(_), Some(_)) => {
                p.error(pos, "a step either sends or asks, not both");
                StepKind::Logic
            }
            (Some(t), None) => {
                check_template_name(p, t);
                for (what, present) in [
                    ("expect", s.expect.is_some()),
                    ("hint", s.hint.is_some()),
                    ("fallback", s.fallback.is_some()),
                    ("wait", s.wait.is_some()),
                    ("save_as", s.save_as.is_some()),
                    ("opt_in", s.opt_in),
                ] {
                    if present {
                        p.error(
                            pos,
                            format!("`{what}` only makes sense on a step that asks"),
                        );
                    }
                }
                StepKind::Send {
                    template: t.value.clone(),
                }
            }
            (None, Some(t)) => {
                check_template_name(p, t);
                let expect = match &s.expect {
                    None => {
                        p.error(
                            Pos::from(t),
                            "a question needs `expect` (choice, scale, number, yes_no, text or keyword)",
                        );
                        Expect::Text
                    }
                    Some(e) => build_expect(p, e),
                };
                if s.opt_in && !matches!(expect, Expect::YesNo) {
                    p.error(pos, "`opt_in` needs `expect: yes_no`: a yes is the opt-in");
                }
                let save_as = s.save_as.clone().unwrap_or_else(|| s.id.value.clone());
                if let Some(prev) = save_keys.insert(save_as.clone(), pos) {
                    p.error(
                        pos,
                        format!(
                            "answer name {save_as:?} is already used by the step at line {}",
                            prev.line
                        ),
                    );
                }
                let fallback = s.fallback.as_ref().map_or(Target::End, |f| resolve(p, f));
                let wait = match &s.wait {
                    None => Wait::default(),
                    Some(w) => build_wait(p, w, &resolve),
                };
                StepKind::Ask(Box::new(Ask {
                    template: t.value.clone(),
                    expect,
                    save_as,
                    hint: s.hint.as_ref().map(|h| {
                        check_template_name(p, h);
                        h.value.clone()
                    }),
                    retries: s.retries.unwrap_or(2),
                    fallback,
                    anonymous: s.anonymous,
                    opt_in: s.opt_in,
                    wait,
                }))
            }
            (None, None) => {
                if s.expect.is_some() {
                    p.error(pos, "`expect` needs `ask`: the question to send");
                }
                StepKind::Logic
            }
        };
        let set = s
            .set
            .iter()
            .filter_map(|(field, e)| {
                if !is_identifier(&field.replace('_', "-")) {
                    p.error(
                        Pos::from(e),
                        format!(
                            "field name {field:?} must be lowercase letters, digits and underscores"
                        ),
                    );
                }
                compile(p, e).map(|x| (field.clone(), x))
            })
            .collect();
        let anonymous = matches!(&kind, StepKind::Ask(a) if a.anonymous);
        let escalate = s
            .escalate
            .iter()
            .map(|e| build_escalate(p, e, matches!(kind, StepKind::Ask(_)), anonymous))
            .collect();
        let branches = s
            .branch
            .iter()
            .filter_map(|b| {
                let target = resolve(p, &b.goto);
                compile(p, &b.condition).map(|c| (c, target))
            })
            .collect();
        steps.push(Step {
            id: s.id.value.clone(),
            pos,
            kind,
            set,
            tag: s.tag.clone(),
            untag: s.untag.clone(),
            escalate,
            branches,
            next,
        });
    }

    check_reachable(p, start, &steps);

    Some(Flow {
        id: raw.id.value,
        name: raw.name,
        version: raw.version.value,
        language,
        languages,
        program,
        when_busy,
        when_capped,
        vars: raw.vars,
        schedule,
        start,
        steps,
        index,
    })
}

fn check_reachable(p: &mut Problems<'_>, start: usize, steps: &[Step]) {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(i) = todo.pop() {
        if !seen.insert(i) {
            continue;
        }
        let step = &steps[i];
        let mut targets = vec![step.next];
        targets.extend(step.branches.iter().map(|(_, t)| *t));
        if let StepKind::Ask(ask) = &step.kind {
            targets.push(ask.fallback);
            targets.extend(ask.wait.on_expire);
        }
        for t in targets {
            if let Target::Step(j) = t {
                todo.push(j);
            }
        }
    }
    for (i, step) in steps.iter().enumerate() {
        if !seen.contains(&i) {
            p.error(step.pos, format!("step {:?} can never be reached", step.id));
        }
    }
}

fn build_expect(p: &mut Problems<'_>, e: &Spanned<ExpectFile>) -> Expect {
    let pos = Pos::from(e);
    match &e.value {
        ExpectFile::Choice(options) => {
            if options.len() < 2 {
                p.error(pos, "a choice needs at least two options");
            }
            let mut seen: HashMap<String, String> = HashMap::new();
            let mut out = Vec::new();
            for (n, o) in options.iter().enumerate() {
                let mut synonyms: Vec<String> = vec![crate::text::squash(&o.value)];
                let mut label = BTreeMap::new();
                for (code, text) in &o.label {
                    match code.parse::<Lang>() {
                        Ok(l) => {
                            label.insert(l, text.clone());
                            synonyms.push(crate::text::squash(text));
                        }
                        Err(err) => p.error(pos, err),
                    }
                }
                for (code, words) in &o.synonyms {
                    if let Err(err) = code.parse::<Lang>() {
                        p.error(pos, err);
                    }
                    synonyms.extend(words.iter().map(|w| crate::text::squash(w)));
                }
                synonyms.sort();
                synonyms.dedup();
                for s in &synonyms {
                    if s.chars().all(|c| c.is_ascii_digit()) {
                        p.error(
                            pos,
                            format!(
                                "option {:?}: {s:?} is a number; numbers pick options by position",
                                o.value
                            ),
                        );
                    }
                    if let Some(other) = seen.insert(s.clone(), o.value.clone())
                        && other != o.value
                    {
                        p.error(
                            pos,
                            format!(
                                "{s:?} would pick both option {other:?} and option {:?}",
                                o.value
                            ),
                        );
                    }
                }
                let _ = n;
                out.push(Choice {
                    value: o.value.clone(),
                    label,
                    synonyms,
                });
            }
            Expect::Choice(out)
        }
        ExpectFile::Scale { min, max } => {
            if min >= max {
                p.error(
                    pos,
                    format!("impossible scale {min}–{max}: min must be below max"),
                );
            } else if max - min > 10 {
                p.error(
                    pos,
                    format!("scale {min}–{max} is too wide to answer by text (at most 11 points)"),
                );
            } else if *min < 0 {
                p.error(pos, format!("scale {min}–{max} cannot start below 0"));
            }
            Expect::Scale {
                min: *min,
                max: *max,
            }
        }
        ExpectFile::Number { min, max } => {
            if let (Some(a), Some(b)) = (min, max)
                && a > b
            {
                p.error(pos, format!("impossible bounds: min {a} is above max {b}"));
            }
            Expect::Number {
                min: *min,
                max: *max,
            }
        }
        ExpectFile::YesNo => Expect::YesNo,
        ExpectFile::Text => Expect::Text,
        ExpectFile::Keyword(words) => {
            let mut out = Vec::new();
            for (code, list) in words {
                if let Err(err) = code.parse::<Lang>() {
                    p.error(pos, err);
                }
                out.extend(list.iter().map(|w| crate::text::squash(w)));
            }
            if out.is_empty() {
                p.error(pos, "a keyword question needs at least one keyword");
            }
            Expect::Keyword(out)
        }
    }
}

fn build_wait(
    p: &mut Problems<'_>,
    w: &WaitFile,
    resolve: &dyn Fn(&mut Problems<'_>, &Spanned<String>) -> Target,
) -> Wait {
    let mut wait = Wait::default();
    if let Some(r) = &w.remind_after {
        let list: Vec<&String> = match &r.value {
            DurationList::One(s) => vec![s],
            DurationList::Many(v) => v.iter().collect(),
        };
        for s in list {
            match parse_duration(s) {
                Ok(d) => wait.remind_after.push(d),
                Err(e) => p.error(Pos::from(r), e),
            }
        }
    }
    if let Some(t) = &w.remind {
        check_template_name(p, t);
        wait.remind = Some(t.value.clone());
    }
    if let Some(e) = &w.expire_after {
        match parse_duration(&e.value) {
            Ok(d) => wait.expire_after = Some(d),
            Err(err) => p.error(Pos::from(e), err),
        }
    }
    if let Some(e) = &w.expire_at {
        wait.expire_at = compile(p, e);
    }
    if let (Some(_), Some(at)) = (&w.expire_after, &w.expire_at) {
        p.error(Pos::from(at), "use expire_after or expire_at, not both");
    }
    if let Some(t) = &w.on_expire {
        if w.expire_after.is_none() && w.expire_at.is_none() {
            p.error(Pos::from(t), "on_expire needs expire_after or expire_at");
        }
        wait.on_expire = Some(resolve(p, t));
    }
    if let (Some(exp), Some(first)) = (wait.expire_after, wait.remind_after.first())
        && *first >= exp
    {
        p.warning(
            Pos::from(w.remind_after.as_ref().expect("checked")),
            "the first reminder comes after the question expires, so it is never sent",
        );
    }
    wait
}

fn build_escalate(
    p: &mut Problems<'_>,
    e: &Spanned<EscalateFile>,
    on_ask: bool,
    anonymous: bool,
) -> Escalate {
    let pos = Pos::from(e);
    let priority = e
        .value
        .priority
        .value
        .parse()
        .unwrap_or_else(|err: String| {
            p.error(
                Pos::from(&e.value.priority),
                format!("{err} (low, normal or high)"),
            );
            Priority::Normal
        });
    check_template_name(p, &e.value.template);
    let words = e.value.words.as_ref().map(|w| match w {
        WordsFile::Named(name) if name == "worrying" => {
            WORRYING_WORDS.iter().map(|s| (*s).to_owned()).collect()
        }
        WordsFile::Named(name) => {
            p.error(
                pos,
                format!("unknown word list {name:?} (use `worrying` or a list of words)"),
            );
            Vec::new()
        }
        WordsFile::List(list) => list.iter().map(|s| crate::text::fold(s)).collect(),
    });
    if words.is_some() && !on_ask {
        p.error(
            pos,
            "`words` needs a step that asks: there is no answer to read otherwise",
        );
    }
    if let Some(t) = &e.value.ask_first {
        check_template_name(p, t);
        if !on_ask {
            p.error(
                Pos::from(t),
                "`ask_first` needs a step that asks: the caregiver's yes is a reply to it",
            );
        }
    }
    if let Some(t) = &e.value.when_taken_up {
        check_template_name(p, t);
    }
    // An anonymous answer never names its caregiver without their yes.
    let ask_first = match &e.value.ask_first {
        Some(t) => Some(t.value.clone()),
        None if anonymous => Some(ESCALATION_CONSENT.to_owned()),
        None => None,
    };
    Escalate {
        condition: e.value.condition.as_ref().and_then(|c| compile(p, c)),
        words,
        priority,
        template: e.value.template.value.clone(),
        reason: e.value.reason.clone(),
        ask_first,
        when_taken_up: e.value.when_taken_up.as_ref().map(|t| t.value.clone()),
    }
}

fn compile(p: &mut Problems<'_>, source: &Spanned<String>) -> Option<Expr> {
    match EXPRESSIONS.compile_expression_owned(source.value.clone()) {
        Ok(compiled) => {
            let unknown: Vec<String> = compiled
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !EXPRESSION_NAMES.contains(&v.as_str()))
                .collect();
            if !unknown.is_empty() {
                let mut unknown = unknown;
                unknown.sort();
                p.error(
                    Pos::from(source),
                    format!(
                        "expression {:?} uses unknown name(s) {} (known: {})",
                        source.value,
                        unknown.join(", "),
                        EXPRESSION_NAMES.join(", ")
                    ),
                );
            }
            Some(Expr {
                source: source.value.clone(),
                compiled,
            })
        }
        Err(err) => {
            p.error(
                Pos::from(source),
                format!(
                    "invalid expression {:?}: {}",
                    source.value,
                    err.detail().unwrap_or("syntax error")
                ),
            );
            None
        }
    }
}

fn check_template_name(p: &mut Problems<'_>, t: &Spanned<String>) {
    let ok = !t.value.is_empty()
        && t.value.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        });
    if !ok {
        p.error(
            Pos::from(t),
            format!(
                "template name {:?} must be a path like \"pulse/score\" (lowercase, digits, - and _)",
                t.value
            ),
        );
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

/// Parses "90s", "30m", "24h", "3d" and combinations such as "1d12h".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 30m, 24h, 3d, 1d12h)");
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Parses a schedule's cron line: standard crontab, exactly five fields (minute, hour, day of
/// month, month, day of week; 0 or 7 is Sunday), as croner reads it.
pub fn parse_cron(line: &str) -> Result<croner::Cron, String> {
    let fields = line.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron {line:?} must have 5 fields (minute hour day-of-month month day-of-week), not {fields}"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(line)
        .map_err(|e| format!("cron {line:?}: {e}"))
}

/// A schedule's `to:`: all, group:NAME or branch:NAME (a list of phones is for one-off starts).
fn check_schedule_audience(to: &str) -> Result<(), String> {
    match to.split_once(':') {
        _ if to == "all" => Ok(()),
        Some(("group" | "branch", name)) if !name.trim().is_empty() => Ok(()),
        _ => Err(format!(
            "schedule audience {to:?} must be all, group:NAME or branch:NAME"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match Flow::parse("t.yaml", src) {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str =
        "id: hello\nname: Hello\nversion: 1\nsteps:\n  - id: hi\n    send: hello/hi\n";

    #[test]
    fn a_minimal_flow_parses() {
        let (flow, warnings) = Flow::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(flow.id, "hello");
        assert!(warnings.is_empty());
        assert_eq!(flow.steps[0].next, Target::End);
    }

    #[test]
    fn unknown_keys_are_reported_with_line_and_column() {
        let errs = errors("id: hello\nname: Hello\nversion: 1\nstepz: []\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("t.yaml:4:"), "{errs:?}");
        assert!(errs[0].contains("stepz"), "{errs:?}");
    }

    #[test]
    fn yaml_syntax_errors_are_reported_not_panicked() {
        let errs = errors("id: hello\nname: [unclosed\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.yaml:"), "{errs:?}");
    }

    #[test]
    fn every_reference_error_is_reported_at_once() {
        let src = "id: f\nname: F\nversion: 1\nsteps:\n  - id: a\n    send: x/a\n    next: nowhere\n  - id: a\n    send: x/b\n  - id: lonely\n    ask: x/q\n    expect: { scale: { min: 5, max: 1 } }\n    branch:\n      - if: \"answer >\"\n        goto: also-nowhere\n";
        let errs = errors(src);
        let joined = errs.join("\n");
        assert!(
            joined.contains("t.yaml:7:11: error: unknown step \"nowhere\""),
            "{joined}"
        );
        assert!(joined.contains("duplicate step id \"a\""), "{joined}");
        assert!(joined.contains("impossible scale 5–1"), "{joined}");
        assert!(joined.contains("invalid expression"), "{joined}");
        assert!(joined.contains("unknown step \"also-nowhere\""), "{joined}");
        assert!(joined.contains("can never be reached"), "{joined}");
    }

    #[test]
    fn misspelled_names_in_conditions_are_errors() {
        let src = "id: f\nname: F\nversion: 1\nsteps:\n  - id: q\n    ask: x/q\n    expect: text\n    branch:\n      - if: \"answr == 'x'\"\n        goto: end\n";
        let joined = errors(src).join("\n");
        assert!(joined.contains("unknown name(s) answr"), "{joined}");
    }

    #[test]
    fn an_anonymous_questions_escalation_always_asks_first() {
        let src = "id: f\nname: F\nversion: 1\nsteps:\n  - id: q\n    ask: x/q\n    expect: text\n    anonymous: true\n    escalate:\n      - words: worrying\n        priority: high\n        template: alerts/x\n        reason: r\n      - words: [smoke]\n        priority: normal\n        template: alerts/x\n        reason: s\n        ask_first: x/may_we_tell\n        when_taken_up: x/taken_up\n";
        let (flow, _) = Flow::parse("t.yaml", src).unwrap();
        let rules = &flow.steps[0].escalate;
        assert_eq!(rules[0].ask_first.as_deref(), Some(ESCALATION_CONSENT));
        assert_eq!(rules[1].ask_first.as_deref(), Some("x/may_we_tell"));
        assert_eq!(rules[1].when_taken_up.as_deref(), Some("x/taken_up"));
        assert_eq!(flow.anonymous_keys(), vec!["q"]);
        let names: Vec<String> = flow.templates().into_iter().map(|(t, _)| t).collect();
        assert!(names.contains(&ESCALATION_CONSENT.to_owned()), "{names:?}");
        assert!(names.contains(&"x/taken_up".to_owned()), "{names:?}");
    }

    #[test]
    fn ask_first_on_a_step_that_does_not_ask_is_an_error() {
        let src = "id: f\nname: F\nversion: 1\nsteps:\n  - id: s\n    send: x/s\n    escalate:\n      - priority: high\n        template: alerts/x\n        reason: r\n        ask_first: x/may_we_tell\n";
        let joined = errors(src).join("\n");
        assert!(
            joined.contains("`ask_first` needs a step that asks"),
            "{joined}"
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("1d12h").unwrap(),
            Duration::from_secs(129600)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("12").is_err());
    }
}
