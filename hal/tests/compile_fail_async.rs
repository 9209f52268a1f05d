//! Misuse of buffers on the async path must not compile either: writing or dropping an inline
//! buffer while a `publish_async` future borrows it, or writing a shared buffer once an async
//! publish took it (even if that future was dropped). One misuse per file in
//! `tests/cfail_async/`, the compiler's error pinned in its `.stderr`.
#![cfg(all(feature = "std", feature = "async"))]

#[test]
#[cfg_attr(miri, ignore = "trybuild runs rustc, which miri cannot")]
fn async_misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/cfail_async/*.rs");
}
