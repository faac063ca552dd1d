//! The agent's connection guard (`hull_agent::server::limits`), which parses every frame
//! header going each way before ttRPC sees the bytes: arbitrary bytes from a peer, and
//! arbitrary bytes written back, through a guarded in-memory connection with small limits.
//! The guard may close the connection; it must never panic or hang.
#![no_main]

use std::time::Duration;

use hull_agent::server::limits::{Guard, Limits};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input: what the peer sends, then what the agent answers.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (incoming, outgoing) = rest.split_at(rest.len() - at);
    // Tokio's clock is paused and jumps ahead whenever the runtime would wait, so the
    // timeouts below cost no real time (with a real clock most inputs waited them out:
    // ~500 executions per second, mostly asleep). The guard measures stalls by the real
    // clock, so its stall timeout is zero: every partial frame counts as stalled.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let guard = Guard::new(Limits {
            max_frame: 4096,
            frame_budget: 8192,
            max_connections: 2,
            stall_timeout: Duration::ZERO,
            max_pending: 4,
        });
        let (ours, mut peer) = duplex(1 << 16);
        let Some(mut guarded) = guard.admit(ours) else {
            return;
        };
        let _ = peer.write_all(incoming).await;
        drop(peer.shutdown().await);
        let mut buf = vec![0u8; 1 << 16];
        let read = async {
            loop {
                match guarded.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(50), read).await;
        let _ = tokio::time::timeout(Duration::from_millis(50), guarded.write_all(outgoing)).await;
        guard.sweep();
    });
});
