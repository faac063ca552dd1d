//! Commands, one module per group. To add a group: write a module with a
//! `clap::Subcommand` enum and an async `run`, then add a flattened variant
//! to [`Command`] and an arm to [`run`].

pub mod container;
pub mod guest;
pub mod guest_admin;
pub mod health;
pub mod hotplug;
pub mod network;
pub mod sandbox;
pub mod volume;

use clap::Subcommand;
use hull_protocols::AgentClient;

pub use container::ContainerCommand;
pub use guest::GuestCommand;
pub use guest_admin::GuestAdminCommand;
pub use health::HealthCommand;
pub use hotplug::HotplugCommand;
pub use network::NetworkCommand;
pub use sandbox::SandboxCommand;
pub use volume::VolumeCommand;

use crate::output::{Format, Report};

/// Every command, grouped; the groups are flattened so commands appear at
/// the top level (`hull-ctl check`, not `hull-ctl health check`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Health service.
    #[command(flatten)]
    Health(HealthCommand),
    /// Sandbox and guest.
    #[command(flatten)]
    Sandbox(SandboxCommand),
    /// The guest's network.
    #[command(flatten)]
    Network(NetworkCommand),
    /// Hot-plugged vCPUs and memory.
    #[command(flatten)]
    Hotplug(HotplugCommand),
    /// Containers and their processes.
    #[command(flatten)]
    Container(ContainerCommand),
    /// Volumes and swap.
    #[command(flatten)]
    Volume(VolumeCommand),
    /// Guest services: files, clock, entropy, metrics.
    #[command(flatten)]
    Guest(GuestCommand),
    /// The memory agent, diagnostic data and the packet filter.
    #[command(flatten)]
    GuestAdmin(GuestAdminCommand),
}

/// What a command produced.
#[derive(Debug)]
pub struct Outcome {
    /// Printed on stdout in the selected format.
    pub report: Box<dyn Report>,
    /// When set, the command failed after producing output (e.g. the agent
    /// answered but is not serving); hull-ctl exits non-zero with this text.
    pub failure: Option<String>,
    /// A process's exit status that hull-ctl exits with (`run`, `exec`).
    pub exit_status: Option<i32>,
}

impl Outcome {
    /// A successful outcome.
    pub fn ok(report: impl Report + 'static) -> Self {
        Self {
            report: Box::new(report),
            failure: None,
            exit_status: None,
        }
    }
}

/// Runs `command` against the agent.
pub async fn run(
    client: &AgentClient,
    command: &Command,
    format: Format,
) -> anyhow::Result<Outcome> {
    match command {
        Command::Health(c) => health::run(client, c).await,
        Command::Sandbox(c) => sandbox::run(client, c).await,
        Command::Network(c) => network::run(client, c).await,
        Command::Hotplug(c) => hotplug::run(client, c).await,
        Command::Container(c) => container::run(client, c, format).await,
        Command::Volume(c) => volume::run(client, c).await,
        Command::Guest(c) => guest::run(client, c).await,
        Command::GuestAdmin(c) => guest_admin::run(client, c).await,
    }
}
