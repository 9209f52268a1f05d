//! `bench/size` links the sensor message's template into firmware as constants
//! (`bench/size/src/sensor_template.rs`), the way a product would ship a template built on the
//! host. Those constants must be exactly what the `TemplateBuilder` makes, and be accepted by
//! `Template::from_parts`.

use dmapickle_core::template::{Slot, StaticTemplate, Template};
use dmapickle_core::{Descriptor, TemplateBuilder};

mod image {
    include!("../../bench/size/src/sensor_template.rs");
}

/// The Rust source of `sensor_template.rs` for a template.
fn source(t: &Template<'_, 1, 4>) -> String {
    let bytes: String = t.pickle().iter().map(|b| format!("\\x{b:02x}")).collect();
    let slots: String = (t.slots().iter())
        .map(|s| {
            format!(
                "    Slot {{ kind: SlotKind::{:?}, at: {} }},\n",
                s.kind, s.at
            )
        })
        .collect();
    let descs: String = (t.descriptors().iter())
        .map(|d| format!("    {d:?},\n"))
        .collect();
    format!("{bytes}\n{slots}\n{descs}")
}

#[test]
fn the_size_bench_links_the_template_the_builder_makes() {
    let adc = Descriptor::new(1, 0, 8192).read_only();
    let mut storage = [0u8; 128];
    let mut b = TemplateBuilder::<'_, 1, 4, 2>::with_limits(&mut storage);
    b.begin_dict().unwrap();
    b.str("seq").unwrap();
    b.int_slot(0u32).unwrap();
    b.str("t_ns").unwrap();
    b.int_slot(0u64).unwrap();
    b.str("adc").unwrap();
    b.array_slot::<i16>(adc, &[1024, 4]).unwrap();
    b.str("gain").unwrap();
    b.f32_slot(0.0).unwrap();
    b.end_dict().unwrap();
    let built = b.finish().unwrap();
    let linked = Template::<'_, 1, 4>::from_parts(image::PICKLE, image::DESCRIPTORS, image::SLOTS)
        .expect("bench/size/src/sensor_template.rs is not a valid template");
    assert_eq!(
        linked,
        built,
        "bench/size/src/sensor_template.rs is stale; the builder makes:\n{}",
        source(&built)
    );
    let _: &[Slot] = image::SLOTS;
    // The firmware's compile-time checked form holds the same parts.
    const STATIC: StaticTemplate<'static> =
        match StaticTemplate::new(image::PICKLE, image::DESCRIPTORS, image::SLOTS) {
            Ok(template) => template,
            Err(_) => panic!("bench/size/src/sensor_template.rs is not a valid template"),
        };
    assert_eq!(STATIC.pickle(), built.pickle());
    assert_eq!(STATIC.slots(), built.slots());
    assert_eq!(STATIC.descriptors(), built.descriptors());
}
