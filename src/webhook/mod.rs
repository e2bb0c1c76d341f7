//! The webhook stage: deliveries the outbox queued (`store/outbox.rs`, in the
//! transaction of the change they tell of) are claimed, signed and POSTed by
//! the dispatcher, behind an SSRF guard.

mod dispatcher;
mod guard;
mod signing;

pub use dispatcher::Dispatcher;
pub use guard::{RefusedUrl, check_destination};
pub use signing::signature;
