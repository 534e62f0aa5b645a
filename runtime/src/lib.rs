//! What every followers process shares, written once: logging and traces, the flags both services take,
//! their start-up steps, their request loop, their health and metrics routes, the handle that stops a started service and waits
//! for it, and the signals that ask for a clean shutdown. The services' own crates keep only
//! what is theirs (the command path, the queries).

pub mod args;
pub mod cli;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod nats;
pub mod serve;
pub mod startup;
pub mod telemetry;

pub use args::{ServiceArgs, SignatureArgs};
pub use cli::ShownCli;
pub use lifecycle::{ServiceHandle, run_until_signal, shutdown_signal};
pub use nats::round_trip;
pub use serve::{Registered, Responder, ServiceSpec, endpoints, serve};
pub use startup::{Background, StartError};
pub use telemetry::{Telemetry, TelemetryArgs, init_logging};
