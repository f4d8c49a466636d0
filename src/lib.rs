//! The gRPC contract of Cantina and the client library that the server, the
//! `cantina` CLI and the tests share.
//!
//! - [`v1`]: the generated messages, clients and server traits of package
//!   `cantina.v1` (from `proto/cantina/v1/*.proto`).
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, with doc comments, for
//!   reflection and for the proto3 JSON mapping.
//! - [`json`]: proto3 JSON for any of our messages, and `Struct` ⇄ JSON.
//! - [`client`]: connecting to a server, with the bearer token when one is set.
//! - [`line`]: the syntax of a console line: split into words, join back.

pub mod client;
pub mod json;
pub mod line;

/// Generated code of package `cantina.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("cantina.v1");
}

/// The encoded `FileDescriptorSet` of the contract and everything it imports,
/// with source comments, as the build compiled it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cantina_descriptor.bin"));

/// Health service names of the subsystems, as the gRPC contract fixes them (docs/grpc.md).
pub mod health {
    /// The whole server.
    pub const SERVER: &str = "";
    /// Music, sound and speech output.
    pub const AUDIO: &str = "cantina.audio";
    /// The LED eyes on the Arduino.
    pub const EYES: &str = "cantina.eyes";
    /// Log capture and streaming.
    pub const LOGS: &str = "cantina.logs";
    /// Plan execution.
    pub const PLANS: &str = "cantina.plans";
    /// Speech (the text-to-speech engine and speech playback).
    pub const SPEECH: &str = "cantina.speech";
    /// The servos on the Pololu Maestro (or virtual servos).
    pub const SERVOS: &str = "cantina.servos";
}
