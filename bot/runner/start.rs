//! Deciding a start for one caregiver (pure): whether they can be reached, whether another
//! conversation or the weekly cap holds them back (contact pressure), and the flow's first
//! messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{PlanBuilder, Runner, interrupted_state, person};
use crate::flow::Flow;
use crate::flow::definition::{Program, WhenBusy, WhenCapped};
use crate::flow::engine::{self};
use crate::model::{
    ConsentStatus, ConvRef, ConversationStatus, DecideError, OutboundKind, Plan, Snapshot,
    StartOutcome, StartSnapshot, Write,
};
use crate::store::Store;

impl<S: Store> Runner<S> {
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
    ) -> Result<(Plan, StartOutcome), DecideError> {
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
    pub(super) fn decide_start(
        &self,
        flow: &Arc<Flow>,
        rev: i64,
        vars: &BTreeMap<String, Value>,
        snap: &Snapshot,
        now: DateTime<Utc>,
        capped: Option<StartOutcome>,
    ) -> Result<(Plan, StartOutcome), DecideError> {
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
        let t = engine::start(flow, &person, all_vars, now)?;
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
}
