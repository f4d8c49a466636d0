//! Plans: timed shows on layers that pre-empt each other.
//!
//! So far the plan model ([`model`]) and the decoder of plan documents
//! ([`decode`]: every problem at once, each with its JSON path). The
//! timeline engine, the executor and `PlanService` come next; until then no
//! command or service offers plans.

pub mod decode;
pub mod model;
pub mod timeline;
