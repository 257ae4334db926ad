//! Deciding a conversation's timer (pure): a reminder or an expiry, due now; a caregiver who
//! opted out or left meanwhile has the conversation closed instead.

use chrono::{DateTime, Utc};

use super::{PlanBuilder, Runner, interrupted_state, person};
use crate::flow::engine::{self, State};
use crate::model::{
    ConsentStatus, ConvRef, ConversationStatus, DecideError, OutboundKind, Plan, Snapshot, Write,
};
use crate::store::Store;

impl<S: Store> Runner<S> {
    pub(super) fn decide_timer(
        &self,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<Plan, DecideError> {
        let mut plan = PlanBuilder::new(self, snap, now);
        let (Some(conv), Some(caregiver)) = (&snap.conversation, &snap.caregiver) else {
            return Ok(plan.finish());
        };
        let flow = self.flow_for(conv.flow_rev)?;
        let state: State = serde_json::from_value(conv.state.clone()).map_err(|source| {
            DecideError::UnreadableState {
                conversation: conv.id,
                source,
            }
        })?;
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
        let t = engine::resume(&flow, &state, &person, input, now)?;
        plan.apply(&flow, &person, t, OutboundKind::Program)?;
        Ok(plan.finish())
    }
}
