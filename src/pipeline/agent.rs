//! An agent's mail: the commands at its top are applied, its text is relayed to the ticket's
//! customer (or kept as an internal note), and a mistake is answered to the agent with nothing
//! applied. The decisions are `agent`'s (who is an agent, what the commands mean) and
//! `thread`'s (which ticket); this file records them and drafts the mail.

use std::sync::Arc;

use super::handle::Turn;
use super::{Action, Outcome, Pipeline, Planned, record};
use crate::agent::{Command, Instructions};
use crate::guard;
use crate::parse::Mailbox;
use crate::reply::{AgentNoticeDraft, Draft, NoticeReason, RelayDraft};
use crate::store::{self, EventKind, MessageAction};
use crate::thread::Link;

impl Pipeline {
    /// Acts on mail from a recognised agent: `link` is the ticket it answers, if any.
    pub(super) fn handle_agent<'a>(
        &self,
        t: &Turn<'_, 'a>,
        link: Option<Link>,
        outcome: &mut Outcome,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<()> {
        let agent = t.msg.from_address();
        let Some(Link { ticket, .. }) = link else {
            outcome.action = Action::Refused;
            self.store_agent_mail(t, None, MessageAction::AgentCommand)?;
            let detail = "the mail threads onto no ticket: nothing relayed";
            store::record_event(
                t.conn,
                EventKind::AgentRefused,
                None,
                None,
                Some(agent),
                detail,
            )?;
            return self.notify_agent(t, None, NoticeReason::NoTicket, drafts);
        };
        outcome.ticket = Some(ticket.ticket_ref.clone());
        outcome.category = Some(ticket.category.clone());
        let categories: Vec<String> = t
            .classifier
            .categories()
            .iter()
            .map(|c| c.id.clone())
            .collect();
        let instructions =
            Instructions::parse(&t.msg.new_text).and_then(|i| i.resolve(&categories, &self.agents));
        let instructions = match instructions {
            Ok(i) => i,
            Err(problems) => {
                outcome.action = Action::Refused;
                self.store_agent_mail(t, Some(ticket.id), MessageAction::AgentCommand)?;
                store::record_event(
                    t.conn,
                    EventKind::AgentRefused,
                    Some(ticket.id),
                    None,
                    Some(agent),
                    &problems.join("; "),
                )?;
                let reason = NoticeReason::Commands(problems);
                return self.notify_agent(t, Some(&ticket), reason, drafts);
            }
        };
        let relay = !instructions.is_note() && !instructions.text.is_empty();
        let (action, stored_as) = if instructions.is_note() {
            (Action::Note, MessageAction::Note)
        } else if relay {
            (Action::Relayed, MessageAction::AgentReply)
        } else {
            (Action::Commands, MessageAction::AgentCommand)
        };
        outcome.action = action;
        self.store_agent_mail(t, Some(ticket.id), stored_as)?;
        for command in &instructions.commands {
            match command {
                Command::Category(id) => {
                    store::recategorise(t.conn, ticket.id, id, Some(agent))?;
                    outcome.category = Some(id.clone());
                }
                Command::Assign(who) => store::assign(t.conn, ticket.id, who, Some(agent))?,
                Command::Note | Command::Status(_) => {}
            }
        }
        if relay {
            let conversation = store::conversation(t.conn, ticket.id, &ticket.customer)?;
            let agent_name = self
                .agents
                .display_name(agent, t.msg.from.as_ref().and_then(|m| m.name.as_deref()));
            let draft = Draft::Relay(RelayDraft {
                ticket_id: ticket.id,
                agent: agent.to_owned(),
                ticket_ref: ticket.ticket_ref.clone(),
                ticket_subject: ticket.subject.clone(),
                customer: Mailbox {
                    name: ticket.customer_name.clone(),
                    address: ticket.customer.clone(),
                },
                from_name: self.agents.from_name(&agent_name, &self.identity.name),
                text: instructions.text.clone(),
                agent_raw: &t.incoming.raw,
                in_reply_to: conversation.latest_from_customer,
                references: conversation.ids,
                message_id: self.signer.generate("relay"),
                locale: ticket.language.clone(),
            });
            drafts.push(Arc::new(Planned {
                outcome: t.at,
                draft,
            }));
            let detail = format!("to {}", ticket.customer);
            store::record_event(
                t.conn,
                EventKind::Relayed,
                Some(ticket.id),
                None,
                Some(agent),
                &detail,
            )?;
        }
        if let Some(status) = instructions.status() {
            store::change_status(t.conn, ticket.id, status, t.now, Some(agent))?;
        } else {
            store::touch_ticket_keep_status(t.conn, ticket.id, t.now)?;
        }
        if instructions.is_note() {
            // The rest of the team sees the note; the customer never does.
            let account = crate::accounts::of_ticket(
                t.conn,
                ticket.id,
                &ticket.customer,
                &self.own_addresses,
            )?;
            let note = self.draft_notification(
                t.classifier,
                ticket,
                (t.msg, t.incoming),
                (Vec::new(), Vec::new()),
                "note",
                account,
            );
            if let Some(draft) = note {
                drafts.push(Arc::new(Planned {
                    outcome: t.at,
                    draft,
                }));
            }
        }
        Ok(())
    }

    /// Stores the agent's mail as received, on `ticket_id` when it has one.
    fn store_agent_mail(
        &self,
        t: &Turn<'_, '_>,
        ticket_id: Option<i64>,
        action: MessageAction,
    ) -> anyhow::Result<()> {
        record::insert_inbound(
            t.conn, t.incoming, t.msg, ticket_id, action, None, None, t.now,
        )?;
        Ok(())
    }

    /// Tells the agent why nothing was relayed; limited like acknowledgements, so two
    /// misconfigured systems cannot ping-pong through us.
    fn notify_agent<'a>(
        &self,
        t: &Turn<'_, 'a>,
        ticket: Option<&store::Ticket>,
        reason: NoticeReason,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<()> {
        let agent = t.msg.from_address();
        let history = record::BatchHistory {
            conn: t.conn,
            drafts: drafts.as_slice(),
            kind: store::OutboxKind::AgentNotice,
        };
        if let Err(refusal) = guard::may_acknowledge(
            &self.acks,
            &history,
            agent,
            None,
            t.incoming.delivered_at,
            t.now,
        )? {
            let detail = format!("no notice to the agent: {refusal}");
            let ticket_id = ticket.map(|t| t.id);
            store::record_event(
                t.conn,
                EventKind::AgentRefused,
                ticket_id,
                None,
                Some(agent),
                &detail,
            )?;
            return Ok(());
        }
        let draft = Draft::AgentNotice(AgentNoticeDraft {
            ticket_id: ticket.map(|t| t.id),
            ticket_ref: ticket.map(|t| t.ticket_ref.clone()),
            agent: agent.to_owned(),
            reason,
            original_subject: t.msg.subject.clone(),
            original_message_id: if t.msg.message_id_synthesized {
                String::new()
            } else {
                t.msg.message_id.clone()
            },
            message_id: self.signer.generate("notice"),
            locale: self.default_locale.clone(),
        });
        drafts.push(Arc::new(Planned {
            outcome: t.at,
            draft,
        }));
        Ok(())
    }
}
