//! One suite, both stores: the embedded store must behave like etcd for everything
//! modelplane uses (compare-and-swap on revision, prefix watch from a revision, leases
//! that expire and delete their keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use modelplane_store::{EmbeddedStore, EventKind, KvStore, WatchStream};

async fn next_event(stream: &mut WatchStream) -> modelplane_store::WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("event ok")
}

async fn suite(store: Arc<dyn KvStore>) {
    // Put, get, range by prefix in key order; revisions grow.
    let r1 = store.put("/t/a/1", b"one".to_vec(), None).await.expect("put");
    let r2 = store.put("/t/a/2", b"two".to_vec(), None).await.expect("put");
    store.put("/t/b/1", b"other".to_vec(), None).await.expect("put");
    assert!(r2 > r1);
    let snapshot = store.range("/t/a/").await.expect("range");
    let keys: Vec<&str> = snapshot.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/t/a/1", "/t/a/2"]);
    assert!(snapshot.revision >= r2);

    // Limited reads from a start key: chunks that stop inside the prefix say so.
    store.put("/t/a/3", b"three".to_vec(), None).await.expect("put");
    let first = store.range_from("/t/a/", "", 2).await.expect("range_from");
    let keys: Vec<&str> = first.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!((keys.as_slice(), first.more), (["/t/a/1", "/t/a/2"].as_slice(), true));
    let rest = store.range_from("/t/a/", "/t/a/2\0", 2).await.expect("range_from");
    let keys: Vec<&str> = rest.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!((keys.as_slice(), rest.more), (["/t/a/3"].as_slice(), false));
    let exact = store.range_from("/t/a/", "/t/a/2", 2).await.expect("range_from");
    assert_eq!((exact.kvs.len(), exact.more), (2, false), "the start key itself is included");
    assert!(store.range_from("/t/a/", "/t/b", 5).await.expect("range_from").kvs.is_empty());
    assert!(store.delete("/t/a/3").await.expect("delete"));
    let kv = store.get("/t/a/2").await.expect("get").expect("present");
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (b"two".as_slice(), r2));
    assert!(store.get("/t/missing").await.expect("get").is_none());

    // Compare-and-swap: create-only, then only on the revision read.
    assert!(!store.compare_and_swap("/t/a/1", 0, b"x".to_vec(), None).await.expect("cas"));
    assert!(store.compare_and_swap("/t/new", 0, b"n".to_vec(), None).await.expect("cas"));
    let current = store.get("/t/new").await.expect("get").expect("present");
    assert!(!store.compare_and_swap("/t/new", current.mod_revision - 1, b"stale".to_vec(), None).await.expect("cas"));
    assert!(store.compare_and_swap("/t/new", current.mod_revision, b"fresh".to_vec(), None).await.expect("cas"));
    assert_eq!(store.get("/t/new").await.expect("get").expect("present").value, b"fresh");

    // Watch from a past revision replays; later changes stream; other prefixes do not.
    let from = store.range("/t/w/").await.expect("range").revision + 1;
    store.put("/t/w/past", b"p".to_vec(), None).await.expect("put");
    let mut watch = store.watch("/t/w/", from).await.expect("watch");
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, event.key.as_str()), (EventKind::Put, "/t/w/past"));
    store.put("/t/elsewhere", b"e".to_vec(), None).await.expect("put");
    store.put("/t/w/live", b"l".to_vec(), None).await.expect("put");
    assert!(store.delete("/t/w/past").await.expect("delete"));
    assert!(!store.delete("/t/w/past").await.expect("delete again"));
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, event.key.as_str(), event.value.as_slice()),
        (EventKind::Put, "/t/w/live", b"l".as_slice())
    );
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, event.key.as_str()), (EventKind::Delete, "/t/w/past"));

    // Leases: revoke deletes at once; expiry deletes within a few TTLs; keep-alive keeps.
    let lease = store.lease_grant(Duration::from_secs(2)).await.expect("grant");
    store.put("/t/l/revoked", b"r".to_vec(), Some(lease)).await.expect("put");
    store.lease_revoke(lease).await.expect("revoke");
    assert!(store.get("/t/l/revoked").await.expect("get").is_none());

    // Kept alive every 200 ms for twice its TTL, so only the keep-alives can have kept it;
    // a stall of the machine would have to last a whole TTL (4 s) to lose it.
    let kept_ttl = Duration::from_secs(4);
    let kept = store.lease_grant(kept_ttl).await.expect("grant");
    let expiring = store.lease_grant(Duration::from_secs(2)).await.expect("grant");
    store.put("/t/l/kept", b"k".to_vec(), Some(kept)).await.expect("put");
    store.put("/t/l/expiring", b"e".to_vec(), Some(expiring)).await.expect("put");
    let started = Instant::now();
    while store.get("/t/l/expiring").await.expect("get").is_some() || started.elapsed() < 2 * kept_ttl {
        // Bounds a hang only.
        assert!(started.elapsed() < Duration::from_secs(60), "leased key outlived its lease");
        store.lease_keep_alive(kept).await.expect("keep alive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.get("/t/l/kept").await.expect("get").is_some(), "kept-alive key vanished");
    let refreshed = store.lease_keep_alive(expiring).await;
    assert!(matches!(refreshed, Err(modelplane_store::Error::LeaseNotFound(_))), "{refreshed:?}");
    assert!(matches!(
        store.put("/t/l/late", b"x".to_vec(), Some(expiring)).await,
        Err(modelplane_store::Error::LeaseNotFound(_) | modelplane_store::Error::Unavailable(_))
    ));
}

#[tokio::test]
async fn embedded_store_semantics() {
    let dir = tempfile::tempdir().expect("temp dir");
    suite(Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).expect("open"))).await;
}

#[tokio::test]
async fn etcd_store_semantics() {
    let etcd = modelplane_tests::Etcd::start().expect("etcd starts");
    suite(modelplane_store::connect(&etcd.url).await.expect("connect")).await;
}

#[tokio::test]
async fn embedded_store_survives_a_restart_but_not_its_leases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.put("/t/durable", b"d".to_vec(), None).await.expect("put");
        let lease = store.lease_grant(Duration::from_secs(60)).await.expect("grant");
        store.put("/t/leased", b"l".to_vec(), Some(lease)).await.expect("put");
    }
    // The dropped store's expiry task lets go of the file soon after; until then it is
    // still open. Retry until it is free (the deadline only bounds a hang).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let store = loop {
        match EmbeddedStore::open(&path) {
            Ok(store) => break store,
            Err(err) => assert!(std::time::Instant::now() < deadline, "the store file was never let go: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(store.get("/t/durable").await.expect("get").expect("kept").value, b"d");
    assert!(store.get("/t/leased").await.expect("get").is_none(), "a dead process's leased key survived");
}
