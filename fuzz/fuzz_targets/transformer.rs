//! What a target gets of an event: PutEvents entries become envelopes or
//! entry errors, InputPaths and InputTransformers compile or are refused,
//! and a compiled one renders any event without panicking.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wisp_events::envelope::{build, Context, Entry, JsonPath, Template};
use wisp_events::model::InputTransformer;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    source: &'a str,
    detail_type: &'a str,
    detail: &'a str,
    time: Option<&'a str>,
    paths: Vec<(&'a str, &'a str)>,
    template: &'a str,
    input_path: &'a str,
}

fuzz_target!(|input: Input| {
    let entry = Entry {
        source: Some(input.source.into()),
        detail_type: Some(input.detail_type.into()),
        detail: Some(input.detail.into()),
        time: input.time.map(|t| serde_json::Value::String(t.into())),
        ..Default::default()
    };
    let _ = entry.size();
    let Ok(event) = build(&entry, "id", "000000000000", "us-east-1", 0) else {
        return;
    };
    if let Ok(path) = JsonPath::parse(input.input_path) {
        let _ = path.get(&event);
    }
    let transformer = InputTransformer {
        input_paths_map: Some(
            input
                .paths
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        input_template: input.template.into(),
    };
    if let Ok(t) = Template::compile(&transformer) {
        let cx = Context {
            rule_name: "r",
            rule_arn: "arn:aws:events:us-east-1:000000000000:rule/r",
            ingestion_ms: 0,
        };
        let _ = t.render(&event, &cx);
    }
});
