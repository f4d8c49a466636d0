//! Plans: timed shows on layers that pre-empt each other.
//!
//! So far the pure parts: the plan model ([`model`]), the decoder of plan
//! documents ([`decode`]: the proto3 JSON of `Plan`, every problem at once
//! with its JSON path), the timeline core ([`timeline`]: what to start and
//! stop, and when, on the plan's audio-clock time) and the dry run
//! ([`resolve`]: each step's start and length where known), and the
//! executor of one plan ([`executor`]: the plan's time on the audio's sample
//! clock, each step through the subsystems' handles, aborts, pause), and
//! the layers' rules ([`layers`]: replace, queue or skip; override cancels,
//! foreground pauses ambient, which resumes). The `plans` subsystem, plan
//! files and `PlanService` come next; until then no command or service
//! offers plans.

pub mod decode;
pub mod executor;
pub mod files;
pub mod layers;
pub mod model;
pub mod resolve;
pub mod service;
pub mod timeline;

pub use service::{Changed, PlanError, PlanInfo, PlanStatus, Plans, PlansState, Started};
