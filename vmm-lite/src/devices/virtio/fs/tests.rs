//! The vhost-user-fs frontend against a fake backend that speaks the wire protocol on a
//! real Unix socket: the message sequence, the file descriptors passed (memory table,
//! kick, call) and the call → interrupt path.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, SubscriberOps};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::virtio::GuestMemory;
use virtio_queue::Queue;

use super::fake_backend::{FakeBackend, MARKER, code::*};

fn shared_memory() -> GuestMemory {
    let file = tempfile::tempfile().unwrap();
    file.set_len(0x10_0000).unwrap();
    GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(0),
        0x10_0000,
        Some(FileOffset::new(file, 0)),
    )])
    .unwrap()
}

fn ready_queue(base: u64) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(16);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some(base as u32 + 0x1000), Some(0));
    q.set_used_ring_address(Some(base as u32 + 0x2000), Some(0));
    q.set_ready(true);
    q
}

#[test]
fn frontend_negotiates_sends_the_memory_table_and_wires_kick_and_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let backend = FakeBackend::spawn(listener, 2, false);
    let recv = || {
        backend
            .messages
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
    };

    let fs = Fs::new(&path, "kataShared", 1).unwrap();
    assert_eq!(fs.device_type(), 26);
    assert_eq!(
        fs.features(),
        VIRTIO_F_VERSION_1,
        "vhost-only bits are hidden"
    );
    let mut tag = [0u8; TAG_LEN + 4];
    fs.read_config(0, &mut tag);
    assert_eq!(&tag[..10], b"kataShared");
    assert!(tag[10..TAG_LEN].iter().all(|&b| b == 0));
    assert_eq!(u32::from_le_bytes(tag[TAG_LEN..].try_into().unwrap()), 1);
    let codes: Vec<u32> = (0..5).map(|_| recv().code).collect();
    assert_eq!(
        codes,
        [
            SET_OWNER,
            GET_FEATURES,
            GET_PROTOCOL_FEATURES,
            SET_PROTOCOL_FEATURES,
            GET_QUEUE_NUM
        ]
    );

    let fs = Arc::new(Mutex::new(fs));
    let mut em = EventManager::<Arc<Mutex<Fs>>>::new().unwrap();
    em.add_subscriber(fs.clone());
    let mem = shared_memory();
    let interrupt = Interrupt::new().unwrap();
    fs.lock()
        .unwrap()
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![ready_queue(0x1_0000), ready_queue(0x2_0000)],
            interrupt: interrupt.clone(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();

    let features = recv();
    assert_eq!(features.code, SET_FEATURES);
    assert_eq!(
        u64::from_le_bytes(features.body[..8].try_into().unwrap()),
        VIRTIO_F_VERSION_1 | 1 << 30
    );
    let table = recv();
    assert_eq!(table.code, SET_MEM_TABLE);
    assert_eq!(table.fds.len(), 1, "guest RAM's fd goes with the table");
    // The region: guest address 0, size 1 MiB, our mapping's address.
    let region = &table.body[8..];
    assert_eq!(u64::from_le_bytes(region[0..8].try_into().unwrap()), 0);
    assert_eq!(
        u64::from_le_bytes(region[8..16].try_into().unwrap()),
        0x10_0000
    );
    let hva = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
    assert_eq!(u64::from_le_bytes(region[16..24].try_into().unwrap()), hva);

    let mut calls = Vec::new();
    let mut kicks = Vec::new();
    for queue in 0..2u32 {
        let num = recv();
        assert_eq!(num.code, SET_VRING_NUM);
        assert_eq!(
            &num.body[..8],
            &[&queue.to_le_bytes()[..], &16u32.to_le_bytes()[..]].concat()[..]
        );
        let addr = recv();
        assert_eq!(addr.code, SET_VRING_ADDR);
        // vhost_vring_addr: index, flags, desc, used, avail, log (u64s after two u32s).
        let desc = u64::from_le_bytes(addr.body[8..16].try_into().unwrap());
        let base = if queue == 0 { 0x1_0000 } else { 0x2_0000 };
        assert_eq!(
            desc,
            hva + base,
            "ring addresses are in the VMM's address space"
        );
        assert_eq!(recv().code, SET_VRING_BASE);
        let call = recv();
        assert_eq!((call.code, call.fds.len()), (SET_VRING_CALL, 1));
        let kick = recv();
        assert_eq!((kick.code, kick.fds.len()), (SET_VRING_KICK, 1));
        assert_eq!(recv().code, SET_VRING_ENABLE);
        calls.extend(call.fds);
        kicks.extend(kick.fds);
    }

    // A guest notify (the ioeventfd) reaches the backend's kick fd.
    fs.lock().unwrap().queue_events()[1].write(1).unwrap();
    let mut value = [0u8; 8];
    (&kicks[1]).read_exact(&mut value).unwrap();
    assert_eq!(u64::from_ne_bytes(value), 1);
    // A backend call becomes the used-buffer interrupt.
    std::io::Write::write_all(&mut &calls[1], &1u64.to_ne_bytes()).unwrap();
    em.run_with_timeout(1000).unwrap();
    assert_eq!(interrupt.status(), 1);
    assert_eq!(interrupt.event().read().unwrap(), 1);

    // Reset stops both rings.
    fs.lock().unwrap().reset();
    assert_eq!(recv().code, GET_VRING_BASE);
    assert_eq!(recv().code, GET_VRING_BASE);
    drop(em);
    drop(fs);
    backend.join();
}

#[test]
fn guest_memory_that_is_not_shared_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let backend = FakeBackend::spawn(listener, 2, false);
    let mut fs = Fs::new(&path, "tag", 1).unwrap();
    let anonymous = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let err = fs
        .activate(Activation {
            mem: anonymous,
            queues: vec![ready_queue(0x1_0000), ready_queue(0x2_0000)],
            interrupt: Interrupt::new().unwrap(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("memfd"), "{err}");
    drop(fs);
    backend.join();
}

#[test]
fn bad_tags_queue_counts_and_missing_backends_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let err = Fs::new(&missing, "tag", 1).err().unwrap().to_string();
    assert!(
        err.contains("nobody.sock") && err.contains("connecting"),
        "{err}"
    );
    let long = "x".repeat(37);
    assert!(matches!(
        Fs::new(&missing, &long, 1),
        Err(FsError::BadTag(_))
    ));
    assert!(matches!(Fs::new(&missing, "", 1), Err(FsError::BadTag(_))));
    assert!(matches!(Fs::new(&missing, "t", 0), Err(FsError::NoQueues)));
    // A backend that serves fewer queues than asked.
    let path = dir.path().join("small.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let backend = FakeBackend::spawn(listener, 2, false);
    let err = Fs::new(&path, "tag", 4).err().unwrap().to_string();
    assert!(err.contains("2 queues, 5 are needed"), "{err}");
    backend.join();
}

#[test]
fn a_serving_backend_finds_the_rings_and_buffers_through_the_memory_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.sock");
    let backend = FakeBackend::spawn(UnixListener::bind(&path).unwrap(), 2, true);
    let fs = Arc::new(Mutex::new(Fs::new(&path, "tag", 1).unwrap()));
    let mut em = EventManager::<Arc<Mutex<Fs>>>::new().unwrap();
    em.add_subscriber(fs.clone());
    let mem = shared_memory();
    // Queue 1: one chain, a readable then a writable buffer.
    let (desc, avail) = (0x2_0000u64, 0x2_1000u64);
    mem.write_obj(0x5_0000u64, GuestAddress(desc)).unwrap();
    mem.write_obj(16u32, GuestAddress(desc + 8)).unwrap();
    mem.write_obj(1u16, GuestAddress(desc + 12)).unwrap(); // NEXT
    mem.write_obj(1u16, GuestAddress(desc + 14)).unwrap();
    mem.write_obj(0x6_0000u64, GuestAddress(desc + 16)).unwrap();
    mem.write_obj(16u32, GuestAddress(desc + 24)).unwrap();
    mem.write_obj(2u16, GuestAddress(desc + 28)).unwrap(); // WRITE
    mem.write_obj(0u16, GuestAddress(avail + 4)).unwrap();
    mem.write_obj(1u16, GuestAddress(avail + 2)).unwrap();
    let interrupt = Interrupt::new().unwrap();
    fs.lock()
        .unwrap()
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![ready_queue(0x1_0000), ready_queue(0x2_0000)],
            interrupt: interrupt.clone(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();
    fs.lock().unwrap().queue_events()[1].write(1).unwrap();
    for _ in 0..100 {
        em.run_with_timeout(50).unwrap();
        if interrupt.status() != 0 {
            break;
        }
    }
    assert_eq!(
        interrupt.status(),
        1,
        "the backend's call became the interrupt"
    );
    assert_eq!(mem.read_obj::<u16>(GuestAddress(0x2_2002)).unwrap(), 1);
    assert_eq!(mem.read_obj::<u32>(GuestAddress(0x6_0000)).unwrap(), MARKER);
    drop(em);
    drop(fs);
    backend.join();
}

#[test]
fn a_backend_that_hangs_up_ends_the_vm_with_a_device_error() {
    use crate::devices::bus::{ExitReason, VmExit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.sock");
    // The backend answers the handshake (5 requests), then dies.
    let backend = FakeBackend::spawn_limited(UnixListener::bind(&path).unwrap(), 2, false, 5);
    let mut fs = Fs::new(&path, "tag", 1).unwrap();
    let exit = VmExit::new().unwrap();
    fs.exit_on_backend_loss(exit.clone());
    let fs = Arc::new(Mutex::new(fs));
    let mut em = EventManager::<Arc<Mutex<Fs>>>::new().unwrap();
    em.add_subscriber(fs.clone());
    backend.join();
    for _ in 0..10 {
        em.run_with_timeout(100).unwrap();
        if exit.reason().is_some() {
            break;
        }
    }
    match exit.reason() {
        Some(ExitReason::DeviceError(message)) => {
            assert!(
                message.contains("hung up") && message.contains("fs.sock"),
                "{message}"
            )
        }
        other => panic!("expected a device error, got {other:?}"),
    }
}
