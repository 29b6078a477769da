//! `gst-inspect-1.0` lists the plugin's three elements and every property is documented.

use std::process::Command;

use gst::prelude::*;
use oa_e2e::plugin_dir;

const ELEMENTS: [&str; 3] = ["ocrsegment", "eosmarker", "minioframesink"];

fn inspect(args: &[&str]) -> String {
    let out = Command::new("gst-inspect-1.0")
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("gst-inspect-1.0 runs (apt package gstreamer1.0-tools)");
    assert!(
        out.status.success(),
        "gst-inspect-1.0 {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn plugin_lists_all_three_elements() {
    let text = inspect(&["orderaccuracy"]);
    for element in ELEMENTS {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{element}:"))),
            "{element} missing from:\n{text}"
        );
    }
}

#[test]
fn every_property_has_a_real_description() {
    gst::init().unwrap();
    // Load the built plugin itself, not whatever the registry cached.
    let plugin = gst::Plugin::load_file(plugin_dir().join("libgstorderaccuracy.so")).unwrap();
    assert_eq!(plugin.plugin_name(), "orderaccuracy");
    for element in ELEMENTS {
        let text = inspect(&[element]);
        assert!(text.contains("Element Properties:"), "{text}");
        let factory = gst::ElementFactory::find(element).unwrap();
        let obj = factory.create().build().unwrap();
        let ours: Vec<_> = obj
            .list_properties()
            .into_iter()
            .filter(|p| p.owner_type() == obj.type_())
            .collect();
        assert!(!ours.is_empty(), "{element} has no properties of its own");
        for p in ours {
            let blurb = p.blurb().unwrap_or_default();
            assert!(
                blurb.split_whitespace().count() >= 4,
                "{element}::{} is not documented (blurb {blurb:?})",
                p.name()
            );
            assert!(
                text.contains(&format!("{:<20}: {blurb}", p.name()))
                    || text.contains(&format!("{}: {blurb}", p.name()))
                    || text.contains(blurb),
                "gst-inspect-1.0 {element} does not show {}",
                p.name()
            );
        }
    }
}
