//! The guest administration methods in a real VM: the memory agent (MemAgentMemcgSet,
//! MemAgentCompactSet) seen working in the guest's counters, GetDiagnosticData's
//! termination message, and GetIPTables / SetIPTables: refused naming the missing tool
//! on the default initrd, and on the initrd built `--with-iptables` a rule set written,
//! read back, and taking effect on traffic from the host.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::{GuestArtifacts, workspace_root};
use hull_e2e::bundle::{ContainerSpec, GUEST_SHARED_DIR, guest_rootfs};
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::nic::NicConfig;
use hull_e2e::vm::VmConfig;
use hull_protocols::agent::{MemAgentCompactConfig, MemAgentMemcgConfig};
use hull_protocols::client::AgentClient;
use hull_protocols::oci_json;
use hull_protocols::ttrpc::Code;
use hull_testkit::check_refused;

const MAC: &str = "52:54:00:12:34:57";

/// The `compact_*` counters of the guest's `/proc/vmstat`, read by a container.
async fn compact_counters(guest: &SandboxGuest, id: &str) -> Result<HashMap<String, u64>> {
    let run = guest
        .run_container(id, &ContainerSpec::new(["cat", "/proc/vmstat"]))
        .await?;
    ensure!(run.status == 0, "cat /proc/vmstat: {}", run.stderr.text());
    let counters: HashMap<String, u64> = run
        .stdout
        .text()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| k.starts_with("compact_"))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect();
    ensure!(
        !counters.is_empty(),
        "/proc/vmstat has no compact_* counters:\n{}",
        run.stdout.text()
    );
    Ok(counters)
}

/// `pgsteal` of a container's memory cgroup, from StatsContainer.
async fn pgsteal(container: &Container) -> Result<u64> {
    let stats = container.stats().await.context("StatsContainer")?;
    let memory = stats
        .cgroup_stats
        .as_ref()
        .and_then(|c| c.memory_stats.as_ref())
        .context("no memory stats")?;
    memory
        .stats
        .get("pgsteal")
        .copied()
        .with_context(|| format!("no pgsteal in {:?}", memory.stats))
}

/// Creates and starts container `id` running `spec` with the JSON `config` changes.
async fn start_with(
    guest: &SandboxGuest,
    id: &str,
    spec: &ContainerSpec,
    change: impl FnOnce(&mut serde_json::Value),
) -> Result<Container> {
    guest.busybox_rootfs(id)?;
    let mut config = spec.config_json(&guest_rootfs(id));
    change(&mut config);
    let spec = oci_json::spec_from_config_json(config.to_string().as_bytes())?;
    let container = Container::create(&guest.client, id, oci_json::spec_to_proto(&spec)?)
        .await
        .with_context(|| format!("CreateContainer {id}"))?;
    container.start().await?;
    Ok(container)
}

async fn memory_agent(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    // Bad values are refused, naming the field.
    check_refused(
        "compact_order 11",
        client
            .mem_agent_compact_set(&MemAgentCompactConfig {
                compact_order: Some(11),
                ..Default::default()
            })
            .await,
        Code::INVALID_ARGUMENT,
        "compact_order",
    )
    .map_err(anyhow::Error::msg)?;
    check_refused(
        "swappiness_max 300",
        client
            .mem_agent_memcg_set(&MemAgentMemcgConfig {
                swappiness_max: Some(300),
                ..Default::default()
            })
            .await,
        Code::INVALID_ARGUMENT,
        "swappiness_max",
    )
    .map_err(anyhow::Error::msg)?;

    // Compaction every second, forced each time, whatever the pressure.
    let before = compact_counters(guest, "vmstat-1").await?;
    client
        .mem_agent_compact_set(&MemAgentCompactConfig {
            period_secs: Some(1),
            compact_force_times: Some(0),
            period_psi_percent_limit: Some(100),
            compact_psi_percent_limit: Some(100),
            ..Default::default()
        })
        .await
        .context("MemAgentCompactSet")?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = compact_counters(guest, "vmstat-2").await?;
    let grown: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| *v > b))
        .map(|(k, v)| format!("{k} {} -> {v}", before[k]))
        .collect();
    eprintln!("compaction counters grown: {grown:?}");
    ensure!(
        after.get("compact_migrate_scanned") > before.get("compact_migrate_scanned"),
        "compact_migrate_scanned did not grow after MemAgentCompactSet:\nbefore {before:?}\nafter {after:?}"
    );
    client
        .mem_agent_compact_set(&MemAgentCompactConfig {
            disabled: Some(true),
            ..Default::default()
        })
        .await?;

    // A container leaves clean file pages behind: copies of busybox, each run once
    // (their mapped pages are in its cgroup's page cache, unmapped once they exit).
    let mem = start_with(
        guest,
        "mem",
        &ContainerSpec::shell(
            "for i in 1 2 3 4 5 6 7 8; do cp /bin/busybox /tmp/bb$i && /tmp/bb$i ls -R / >/dev/null; done; sleep 600",
        ),
        |_| {},
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stolen_before = pgsteal(&mem).await?;
    client
        .mem_agent_memcg_set(&MemAgentMemcgConfig {
            period_secs: Some(1),
            eviction_run_aging_count_min: Some(1),
            period_psi_percent_limit: Some(100),
            eviction_psi_percent_limit: Some(100),
            ..Default::default()
        })
        .await
        .context("MemAgentMemcgSet")?;
    let asked = Instant::now();
    let stolen = loop {
        let now = pgsteal(&mem).await?;
        if now > stolen_before {
            break now;
        }
        if asked.elapsed() > Duration::from_secs(30) {
            let stats = mem.stats().await?;
            bail!(
                "pgsteal of the container's cgroup stayed at {now} for 30 s after MemAgentMemcgSet: {:?}",
                stats.cgroup_stats.memory_stats.stats
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("pgsteal of the container's cgroup: {stolen_before} -> {stolen}");
    client
        .mem_agent_memcg_set(&MemAgentMemcgConfig {
            disabled: Some(true),
            ..Default::default()
        })
        .await?;
    mem.signal("", 9).await?;
    mem.wait("").await?;
    mem.remove().await?;
    Ok(())
}

async fn diagnostic_data(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    check_refused(
        "an unknown log type",
        client.get_diagnostic_data("dmesg", "").await,
        Code::INVALID_ARGUMENT,
        "\"dmesg\"",
    )
    .map_err(anyhow::Error::msg)?;
    check_refused(
        "an unknown container",
        client.get_diagnostic_data("termination_log", "nope").await,
        Code::NOT_FOUND,
        "nope",
    )
    .map_err(anyhow::Error::msg)?;

    // Kubernetes' termination message: a file in the share, bind-mounted into the
    // container, named by the annotation.
    std::fs::write(guest.share().join("term-log"), "")?;
    let source = format!("{GUEST_SHARED_DIR}/term-log");
    let said = start_with(
        guest,
        "said",
        &ContainerSpec::shell("printf 'goodbye from said' > /dev/termination-log"),
        |config| {
            config["annotations"] = serde_json::json!({
                "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
            });
            config["mounts"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "destination": "/dev/termination-log",
                    "type": "bind",
                    "source": source,
                    "options": ["rbind", "rw"],
                }));
        },
    )
    .await?;
    ensure!(said.wait("").await? == 0, "the container failed");
    let message = client
        .get_diagnostic_data("termination_log", "said")
        .await
        .context("GetDiagnosticData termination_log")?;
    ensure!(
        message == "goodbye from said",
        "termination message {message:?}"
    );
    said.remove().await?;

    let quiet = start_with(guest, "quiet", &ContainerSpec::new(["true"]), |_| {}).await?;
    quiet.wait("").await?;
    check_refused(
        "a container without the annotation",
        client.get_diagnostic_data("termination_log", "quiet").await,
        Code::FAILED_PRECONDITION,
        "terminationMessagePath",
    )
    .map_err(anyhow::Error::msg)?;
    quiet.remove().await?;
    Ok(())
}

async fn no_iptables(client: &AgentClient) -> Result<()> {
    check_refused(
        "GetIPTables",
        client.get_ip_tables(false).await,
        Code::FAILED_PRECONDITION,
        "iptables-save",
    )
    .map_err(anyhow::Error::msg)?;
    check_refused(
        "GetIPTables ipv6",
        client.get_ip_tables(true).await,
        Code::FAILED_PRECONDITION,
        "ip6tables-save",
    )
    .map_err(anyhow::Error::msg)?;
    check_refused(
        "SetIPTables",
        client.set_ip_tables(false, b"*filter\nCOMMIT\n").await,
        Code::FAILED_PRECONDITION,
        "iptables-restore",
    )
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_agent_and_diagnostic_data_work_and_iptables_is_named_missing() -> Result<()> {
    let guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    no_iptables(&guest.client).await?;
    diagnostic_data(&guest).await?;
    memory_agent(&guest).await?;
    guest.power_off().await?;
    Ok(())
}

const REJECT_WEB: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset
COMMIT
";
const ACCEPT_ALL: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
";
const DROP_DOCS_V6: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 2001:db8::/32 -j DROP
COMMIT
";

/// Whether one GET through the forwarded port gets an HTTP answer (QEMU's user
/// networking accepts the host's connection, then closes it when the guest refuses).
async fn web_answers(port: u16, within: Duration) -> bool {
    tokio::task::spawn_blocking(move || {
        hull_e2e::http::get_from_loopback(port, "/index.html", within).is_ok()
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn iptables_rules_are_set_read_back_and_filter_the_hosts_traffic() -> Result<()> {
    let mut artifacts = GuestArtifacts::locate()?;
    artifacts.initrd = workspace_root().join("build/initrd-iptables.img");
    ensure!(
        artifacts.initrd.exists(),
        "{} is missing: `./run artifacts` builds it (hull-image initrd --with-iptables)",
        artifacts.initrd.display()
    );
    let mut config = VmConfig::new(artifacts);
    let nic = NicConfig::new(MAC).forward_tcp(80)?;
    let port = nic.host_port(80).context("no forward for port 80")?;
    config.nic = Some(nic.clone());
    let guest = SandboxGuest::boot(config).await?;
    let client = guest.client.clone();
    nic.configure_through_agent(&client).await?;

    let empty = String::from_utf8(client.get_ip_tables(false).await.context("GetIPTables")?)?;
    ensure!(!empty.contains("-A "), "rules before any were set: {empty}");

    let mut web = ContainerSpec::new(["httpd", "-f", "-p", "80", "-h", "/www"]);
    web.namespaces.push("network".into());
    let web = start_with(&guest, "web", &web, |_| {}).await?;
    ensure!(
        web_answers(port, Duration::from_secs(60)).await,
        "the web server does not answer before any rule"
    );

    client
        .set_ip_tables(false, REJECT_WEB.as_bytes())
        .await
        .context("SetIPTables")?;
    let saved = String::from_utf8(client.get_ip_tables(false).await?)?;
    ensure!(
        saved.contains("-A INPUT -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset"),
        "GetIPTables after SetIPTables:\n{saved}"
    );
    ensure!(
        !web_answers(port, Duration::from_secs(5)).await,
        "the web server still answers behind a REJECT rule"
    );
    client.set_ip_tables(false, ACCEPT_ALL.as_bytes()).await?;
    ensure!(
        web_answers(port, Duration::from_secs(30)).await,
        "the web server does not answer once the rule is gone"
    );

    client
        .set_ip_tables(true, DROP_DOCS_V6.as_bytes())
        .await
        .context("SetIPTables ipv6")?;
    let saved6 = String::from_utf8(client.get_ip_tables(true).await?)?;
    ensure!(
        saved6.contains("-A INPUT -s 2001:db8::/32 -j DROP"),
        "GetIPTables ipv6:\n{saved6}"
    );
    ensure!(
        !String::from_utf8(client.get_ip_tables(false).await?)?.contains("2001:db8"),
        "the IPv6 rule shows in the IPv4 table"
    );
    check_refused(
        "rules iptables-restore rejects",
        client
            .set_ip_tables(false, b"*filter\n-A NOPE -j WHAT\nCOMMIT\n")
            .await,
        Code::INVALID_ARGUMENT,
        "iptables-restore",
    )
    .map_err(anyhow::Error::msg)?;

    web.signal("", 9).await?;
    web.wait("").await?;
    web.remove().await?;
    guest.power_off().await?;
    Ok(())
}
