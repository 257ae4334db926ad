//! Deciding an inbound message (pure: a snapshot in, a plan out): consent words first, then
//! a shift offer's YES or NO, a supervisor's reply, then the caregiver's conversation; a
//! stranger gets one polite reply a day.

use super::{PlanBuilder, Runner, interrupted_state, person, telegram};
use crate::consent::{self, Keyword, Reading};
use crate::domain::Lang;
use crate::domain::phone::masked_error;
use crate::flow::engine::{self, Input, State};
use crate::model::{
    ConsentStatus, ConvRef, ConversationStatus, DecideError, Inbound, OutboundKind, Plan, Snapshot,
    Write,
};
use crate::store::Store;

impl<S: Store> Runner<S> {
    // Long because it is the order of precedence an inbound message meets (consent words,
    // opted out, a supervisor's reply, a shift YES/NO, a stranger, the conversation), each a
    // few lines that return early; the order is the rule, so it stays in one place.
    pub(super) fn decide_inbound(
        &self,
        snap: &Snapshot,
        inbound: &Inbound,
    ) -> Result<Plan, DecideError> {
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
        let state: State = serde_json::from_value(conv.state.clone()).map_err(|source| {
            DecideError::UnreadableState {
                conversation: conv.id,
                source,
            }
        })?;
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
}
