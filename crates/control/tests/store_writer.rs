//! The `StoreWriter` thread outlives a job that panics: the panic is logged, a transaction it
//! left open is rolled back, and the jobs after it run.

use wharf_control::StoreWriter;
use wharf_store::{Store, StoreError};

// Before: one panicking job ended the writer thread; every later record was lost and every
// state route of the API answered 503.
#[tokio::test]
async fn the_store_writer_keeps_running_after_a_job_panics() {
    let dir = tempfile::tempdir().unwrap();
    let writer = StoreWriter::spawn(Store::open(dir.path()).unwrap()).unwrap();

    // Panics inside a transaction, after a write, and outside of any.
    writer.submit(|store| {
        let _ = store.atomically(|store| -> Result<(), StoreError> {
            store.set_meta("half-done", "x")?;
            panic!("a job fails halfway through its transaction");
        });
    });
    writer.submit(|_| panic!("a job fails outright"));
    // A `run` job that panics drops its reply: its caller gets `None`, as from a stopped writer.
    assert_eq!(
        writer.run(|_| -> u8 { panic!("a use case fails") }).await,
        None
    );

    let answer = writer
        .run(|store| {
            store
                .set_meta("after", "written")
                .map(|()| store.in_transaction())
        })
        .await;
    assert_eq!(
        answer.map(Result::unwrap),
        Some(false),
        "the normal job ran"
    );

    // Committed, as another connection sees it; the panicking job's write is not.
    let reader = Store::open(dir.path()).unwrap();
    assert_eq!(reader.meta("after").unwrap().as_deref(), Some("written"));
    assert_eq!(reader.meta("half-done").unwrap(), None);
}
