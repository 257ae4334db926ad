//! Engine step cost: one `resume` that parses an answer, evaluates the branches and
//! escalation conditions, and renders the next message, on the shipped weekly pulse survey.
//! Run with `cargo bench --bench engine`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use carebot::catalog::{Catalog, sample_agency, sample_person};
use carebot::domain::Lang;
use carebot::flow::engine::{self, Event, Input};
use carebot::render::{CaregiverView, FlowView, MessageContext, SupervisorView};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (catalog, _) =
        Catalog::load(&root.join("flows"), &root.join("templates")).expect("valid catalog");
    let flow = catalog
        .get("weekly-pulse")
        .expect("weekly-pulse")
        .flow
        .clone();
    let person = sample_person(Lang::En);
    let agency = sample_agency();
    let now = carebot::transcript::start_time();
    let state = engine::start(&flow, &person, BTreeMap::new(), now)
        .unwrap()
        .state
        .unwrap();

    let step = |reply: &str| {
        let t = engine::resume(&flow, &state, &person, Input::Reply(reply), now).unwrap();
        let answers = t
            .state
            .as_ref()
            .map(|s| s.answers.clone())
            .unwrap_or_default();
        let mut out = 0usize;
        for e in &t.events {
            if let Event::Send { template, .. } = e {
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
                    escalation: None,
                };
                out += catalog
                    .templates
                    .render(template, Lang::En, &ctx)
                    .unwrap()
                    .0
                    .len();
            }
        }
        out
    };

    for (label, reply) in [
        ("good week (\"4\")", "4"),
        ("low week (\"2\", escalates)", "2"),
        ("re-ask (\"purple\")", "purple"),
    ] {
        for _ in 0..2_000 {
            black_box(step(black_box(reply)));
        }
        let n = 100_000;
        let t0 = Instant::now();
        for _ in 0..n {
            black_box(step(black_box(reply)));
        }
        let per = t0.elapsed().as_nanos() as f64 / n as f64;
        println!("engine step, {label:<28} {per:>8.0} ns/step ({n} steps)");
    }
}
