//! The outbox: every mail kxca sends is first a row here, written in the
//! same transaction as the state change it reports. A sender drains it.
//!
//! States: `queued` → `sending` (claimed) → `sent`, or back to `queued`
//! with a later `next_attempt_at` after a failure, or `failed` after the
//! last attempt. A message is claimed in one transaction, sent, and marked
//! sent in another; a crash between the SMTP server accepting it and the
//! mark is the only window in which a message can go out twice (its claim
//! expires and it is sent again with the same Message-ID).

mod send;
mod smtp;
mod store;

pub use send::{run_once, SendSummary, Sender};
pub use store::{
    count, enqueue, in_state, list, migrations, page, record_delivery_report, retry, to_recipients,
    DeliveryFailure, NewMail, OutboxAttachment, OutboxKind, OutboxMail, OutboxState,
};
