//! The catalog: every flow in `flows/` and every template in `templates/`, loaded and checked
//! together. `flows check` prints what it finds; `serve`, `start` and `simulate` refuse to run
//! with a catalog that has errors, so a broken flow never reaches a caregiver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::domain::Lang;
use crate::flow::definition::{EXPRESSIONS, Expect, StepKind};
use crate::flow::engine::Person;
use crate::flow::{Flow, Problem, Severity};
use crate::render::shifts::{SHIFT_TEMPLATES, Shape, ShiftMessage, Tally, Who, sample_offer, view};
use crate::render::{
    Agency, CaregiverView, EscalationView, FlowView, MessageContext, SYSTEM_TEMPLATES,
    SupervisorView, Templates,
};
use crate::sms::segments;

/// A flow as loaded from its file: the checked flow and the exact text it came from (stored
/// as a revision so running conversations keep the version they started on).
#[derive(Debug, Clone)]
pub struct LoadedFlow {
    pub path: PathBuf,
    pub source: String,
    pub flow: Arc<Flow>,
}

#[derive(Debug)]
pub struct Catalog {
    pub flows: BTreeMap<String, LoadedFlow>,
    pub templates: Arc<Templates>,
}

/// How one message renders, for the segment table `flows check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct MessageStats {
    pub flow: String,
    pub template: String,
    pub lang: Lang,
    pub encoding: String,
    pub segments: u32,
    pub chars: usize,
}

/// Everything `flows check` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub messages: Vec<MessageStats>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

impl Catalog {
    /// Loads and checks everything; returns the catalog only when nothing is an error.
    pub fn load(flows_dir: &Path, templates_dir: &Path) -> Result<(Catalog, Report), Report> {
        let (catalog, report) = check(flows_dir, templates_dir);
        if report.errors() > 0 {
            Err(report)
        } else {
            Ok((catalog, report))
        }
    }

    pub fn get(&self, id: &str) -> Option<&LoadedFlow> {
        self.flows.get(id)
    }
}

/// The caregiver every template and expression is checked against.
pub fn sample_person(lang: Lang) -> Person {
    Person {
        first_name: "Maria".into(),
        language: lang,
        branch: "Chicago North".into(),
        timezone: "America/Chicago".into(),
        groups: vec!["pulse".into()],
        fields: BTreeMap::new(),
        tags: vec![],
    }
}

pub fn sample_agency() -> Agency {
    Agency {
        name: "Sunrise Home Care".into(),
        phone: "(312) 555-0100".into(),
    }
}

/// A plausible answer to every question of `flow`, so templates that quote answers render.
pub fn sample_answers(flow: &Flow) -> BTreeMap<String, Value> {
    flow.steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Ask(ask) => Some((
                ask.save_as.clone(),
                match &ask.expect {
                    Expect::Choice(opts) => Value::from(opts[0].value.clone()),
                    Expect::Scale { min, .. } => Value::from(*min),
                    Expect::Number { min, .. } => Value::from(min.unwrap_or(1.0).max(1.0) as i64),
                    Expect::YesNo => Value::Bool(true),
                    Expect::Text => Value::from("More hours, please"),
                    Expect::Keyword(words) => Value::from(words[0].to_uppercase()),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Loads every flow and template and reports every problem at once.
pub fn check(flows_dir: &Path, templates_dir: &Path) -> (Catalog, Report) {
    let mut report = Report::default();
    let (templates, template_problems) = Templates::load(templates_dir);
    report.problems.extend(template_problems);
    let templates = Arc::new(templates);

    for name in SYSTEM_TEMPLATES {
        if !templates.has(name, Lang::En) {
            report.problems.push(Problem {
                file: templates.path(name, Lang::En).display().to_string(),
                line: 1,
                column: 1,
                severity: Severity::Error,
                message: format!("required template {name:?} is missing"),
            });
        }
    }

    let mut flows = BTreeMap::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(flows_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect()
        })
        .unwrap_or_default();
    if paths.is_empty() {
        report.problems.push(Problem {
            file: flows_dir.display().to_string(),
            line: 1,
            column: 1,
            severity: Severity::Error,
            message: "no flow files (*.yaml) found".into(),
        });
    }
    paths.sort();
    for path in paths {
        let file = path.display().to_string();
        let source = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(Problem {
                    file,
                    line: 1,
                    column: 1,
                    severity: Severity::Error,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match Flow::parse(&file, &source) {
            Err(err) => report.problems.extend(err.problems),
            Ok((flow, warnings)) => {
                report.problems.extend(warnings);
                check_flow(&file, &flow, &templates, &mut report);
                if let Some(prev) = flows.get(&flow.id) {
                    let prev: &LoadedFlow = prev;
                    report.problems.push(Problem {
                        file: file.clone(),
                        line: 1,
                        column: 1,
                        severity: Severity::Error,
                        message: format!(
                            "flow id {:?} is also used by {}",
                            flow.id,
                            prev.path.display()
                        ),
                    });
                    continue;
                }
                flows.insert(
                    flow.id.clone(),
                    LoadedFlow {
                        path: path.clone(),
                        source,
                        flow: Arc::new(flow),
                    },
                );
            }
        }
    }
    check_system_templates(&templates, &mut report);
    check_shift_templates(&templates, &mut report);
    check_desk_templates(&templates, &mut report);
    report.problems.sort();
    report.problems.dedup();
    (Catalog { flows, templates }, report)
}

// Long because it renders every message of a flow in every language against the samples, one
// short block per kind of message (questions, re-asks, reminders, alerts).
fn check_flow(file: &str, flow: &Flow, templates: &Templates, report: &mut Report) {
    let answers = sample_answers(flow);
    let agency = sample_agency();

    // Expressions: evaluate each against the sample so a misspelled answer name or field fails
    // here rather than in a caregiver's conversation.
    for lang in &flow.languages {
        let person = sample_person(*lang);
        let ctx = serde_json::json!({
            "answer": Value::Null,
            "answers": answers,
            "caregiver": person,
            "vars": flow.vars,
            "now": "2026-11-20T16:00:00Z",
        });
        for step in &flow.steps {
            let mut exprs: Vec<&crate::flow::definition::Expr> =
                step.branches.iter().map(|(e, _)| e).collect();
            exprs.extend(step.set.iter().map(|(_, e)| e));
            exprs.extend(step.escalate.iter().filter_map(|e| e.condition.as_ref()));
            if let StepKind::Ask(ask) = &step.kind {
                exprs.extend(ask.wait.expire_at.as_ref());
            }
            for expr in exprs {
                let mut ctx = ctx.clone();
                if let StepKind::Ask(ask) = &step.kind {
                    ctx["answer"] = answers.get(&ask.save_as).cloned().unwrap_or(Value::Null);
                }
                if let Err(e) = expr
                    .compiled
                    .eval(minijinja::Value::from(minijinja::value::Serde(&ctx)))
                {
                    report.problems.push(Problem {
                        file: file.to_owned(),
                        line: step.pos.line,
                        column: step.pos.column,
                        severity: Severity::Error,
                        message: format!(
                            "step {:?}: expression {:?} fails on a sample caregiver: {}",
                            step.id,
                            expr.source,
                            e.detail().unwrap_or("error")
                        ),
                    });
                }
            }
        }
        // Keep the expression environment referenced so its strictness is the one checked.
        let _ = &*EXPRESSIONS;
    }

    let mut seen = std::collections::BTreeSet::new();
    for (name, pos) in flow.templates() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if !templates.has(&name, Lang::En)
            && !flow.languages.iter().any(|l| templates.has(&name, *l))
        {
            report.problems.push(Problem {
                file: file.to_owned(),
                line: pos.line,
                column: pos.column,
                severity: Severity::Error,
                message: format!(
                    "template {name:?} does not exist (expected {})",
                    templates.path(&name, flow.language).display()
                ),
            });
            continue;
        }
        for lang in &flow.languages {
            if !templates.has(&name, *lang) {
                report.problems.push(Problem {
                    file: templates.path(&name, *lang).display().to_string(),
                    line: 1,
                    column: 1,
                    severity: if templates.has(&name, Lang::En) {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    message: format!(
                        "no {lang} translation of {name:?} (used by {file}); English will be sent"
                    ),
                });
            }
            let person = sample_person(*lang);
            let is_alert = flow
                .steps
                .iter()
                .any(|s| s.escalate.iter().any(|e| e.template == name));
            let ctx = MessageContext {
                caregiver: CaregiverView {
                    person: &person,
                    last_name: "Gonzalez",
                },
                agency: &agency,
                supervisor: SupervisorView {
                    name: "Dana Smith".into(),
                },
                answers: &answers,
                vars: &flow.vars,
                flow: FlowView {
                    id: &flow.id,
                    name: &flow.name,
                },
                escalation: is_alert.then(|| EscalationView {
                    id: Some(14),
                    priority: "high".into(),
                    reason: "low week score".into(),
                    answer: "my client's son yells at me".into(),
                }),
            };
            match templates.render(&name, *lang, &ctx) {
                Ok((text, used)) if used == *lang => {
                    // Supervisors answer an alert by its number: one that does not show it
                    // can never be acknowledged, and would be raised up the chain forever.
                    if is_alert && !text.contains("14") {
                        report.problems.push(Problem {
                            file: templates.path(&name, *lang).display().to_string(),
                            line: 1,
                            column: 1,
                            severity: Severity::Error,
                            message: format!(
                                "alert {name:?} does not show {{{{ escalation.id }}}}: supervisors reply ACK <id> to it"
                            ),
                        });
                    }
                    stats(report, &flow.id, &name, *lang, templates, &text)
                }
                Ok(_) => {}
                Err(e) => report.problems.push(Problem {
                    file: templates.path(&name, *lang).display().to_string(),
                    line: Templates::error_line(&e),
                    column: 1,
                    severity: Severity::Error,
                    message: e.to_string(),
                }),
            }
        }
    }
}

fn check_system_templates(templates: &Templates, report: &mut Report) {
    let agency = sample_agency();
    let empty = BTreeMap::new();
    for name in SYSTEM_TEMPLATES {
        for lang in Lang::ALL {
            if !templates.has(name, lang) {
                if templates.has(name, Lang::En) {
                    report.problems.push(Problem {
                        file: templates.path(name, lang).display().to_string(),
                        line: 1,
                        column: 1,
                        severity: Severity::Warning,
                        message: format!("no {lang} translation of {name:?}; English will be sent"),
                    });
                }
                continue;
            }
            let person = sample_person(lang);
            let ctx = MessageContext {
                caregiver: CaregiverView {
                    person: &person,
                    last_name: "Gonzalez",
                },
                agency: &agency,
                supervisor: SupervisorView {
                    name: "Dana Smith".into(),
                },
                answers: &empty,
                vars: &empty,
                flow: FlowView {
                    id: "system",
                    name: "System",
                },
                escalation: None,
            };
            match templates.render(name, lang, &ctx) {
                Ok((text, _)) => stats(report, "system", name, lang, templates, &text),
                Err(e) => report.problems.push(Problem {
                    file: templates.path(name, lang).display().to_string(),
                    line: Templates::error_line(&e),
                    column: 1,
                    severity: Severity::Error,
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// Requires every shift template in English, renders each in every language it exists in
/// against a sample shift, and records its encoding and segments like every other message.
fn check_shift_templates(templates: &Templates, report: &mut Report) {
    let agency = sample_agency();
    let sample = sample_offer();
    for (name, shape) in SHIFT_TEMPLATES {
        if !templates.has(name, Lang::En) {
            report.problems.push(Problem {
                file: templates.path(name, Lang::En).display().to_string(),
                line: 1,
                column: 1,
                severity: Severity::Error,
                message: format!("required template {name:?} is missing"),
            });
            continue;
        }
        let to_supervisor = matches!(shape, Shape::Alert | Shape::Unfilled);
        for lang in Lang::ALL {
            if !templates.has(name, lang) {
                // Supervisors read alerts in English; caregivers get their own language.
                if !to_supervisor {
                    report.problems.push(Problem {
                        file: templates.path(name, lang).display().to_string(),
                        line: 1,
                        column: 1,
                        severity: Severity::Warning,
                        message: format!("no {lang} translation of {name:?}; English will be sent"),
                    });
                }
                continue;
            }
            let person = sample_person(lang);
            let shift = view(&sample, lang, "America/Chicago", *shape == Shape::Caregiver);
            let mut second = sample.clone();
            second.id += 1;
            second.code += 2;
            second.starts_at += chrono::Duration::days(1);
            second.ends_at += chrono::Duration::days(1);
            let offers = [shift.clone(), view(&second, lang, "America/Chicago", true)];
            let msg = ShiftMessage {
                agency: &agency,
                shift: &shift,
                caregiver: (*shape != Shape::Unfilled).then_some(Who {
                    first_name: &person.first_name,
                    last_name: "Gonzalez",
                    external_id: "C-1042",
                }),
                offers: (*shape == Shape::Choice).then_some(&offers[..]),
                tally: (*shape == Shape::Unfilled).then_some(Tally {
                    offered: 12,
                    declined: 3,
                }),
            };
            match templates.render(name, lang, &msg) {
                Ok((text, _)) => stats(report, "shifts", name, lang, templates, &text),
                Err(e) => report.problems.push(Problem {
                    file: templates.path(name, lang).display().to_string(),
                    line: Templates::error_line(&e),
                    column: 1,
                    severity: Severity::Error,
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// The messages supervisors get about alerts: required in English (supervisors are written to
/// in English), in Spanish for the confirmations of Spanish replies (English otherwise).
fn check_desk_templates(templates: &Templates, report: &mut Report) {
    let agency = sample_agency();
    let view = crate::render::desk::sample_desk_view(&agency);
    for name in crate::render::desk::DESK_TEMPLATES {
        for lang in Lang::ALL {
            if !templates.has(name, lang) {
                report.problems.push(Problem {
                    file: templates.path(name, lang).display().to_string(),
                    line: 1,
                    column: 1,
                    severity: if lang == Lang::En {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    message: if lang == Lang::En {
                        format!("required template {name:?} is missing")
                    } else {
                        format!("no {lang} translation of {name:?}; English will be sent")
                    },
                });
                continue;
            }
            match templates.render(name, lang, &view) {
                Ok((text, _)) => stats(report, "supervisor", name, lang, templates, &text),
                Err(e) => report.problems.push(Problem {
                    file: templates.path(name, lang).display().to_string(),
                    line: Templates::error_line(&e),
                    column: 1,
                    severity: Severity::Error,
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// Records a message's encoding and segments, and warns where it costs more than one GSM-7
/// segment, naming the characters that force UCS-2 and their plain replacements.
pub(crate) fn stats(
    report: &mut Report,
    flow: &str,
    name: &str,
    lang: Lang,
    templates: &Templates,
    text: &str,
) {
    let seg = segments::analyze(text);
    let file = templates.path(name, lang).display().to_string();
    // Telegram messages are never SMS: their encoding and length cost nothing.
    let sms = !name.starts_with("telegram/");
    if sms && seg.encoding == segments::Encoding::Ucs2 {
        let chars: Vec<String> = seg
            .ucs2_chars
            .iter()
            .map(|c| match segments::smart_replacement(*c) {
                Some(r) => format!("{c:?} (use {r:?})"),
                None => format!("{c:?}"),
            })
            .collect();
        report.problems.push(Problem {
            file: file.clone(),
            line: 1,
            column: 1,
            severity: Severity::Warning,
            message: format!(
                "UCS-2, {} segment(s): forced by {}",
                seg.segments,
                chars.join(", ")
            ),
        });
    } else if sms && seg.segments > 1 {
        report.problems.push(Problem {
            file: file.clone(),
            line: 1,
            column: 1,
            severity: Severity::Warning,
            message: format!(
                "GSM-7, {} segments ({} characters)",
                seg.segments, seg.units
            ),
        });
    }
    report.messages.push(MessageStats {
        flow: flow.to_owned(),
        template: name.to_owned(),
        lang,
        encoding: seg.encoding.to_string(),
        segments: seg.segments,
        chars: text.chars().count(),
    });
}
