//! API Gateway mapping: any request becomes both payload format events,
//! and any bytes a function returns map to a response or to a
//! MappingError, never a panic; a mapped response is one hyper can send.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wisp_core::apigw::{self, GatewayRequest};
use wisp_core::route::{Route, RouteTable};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a str,
    raw_path: &'a str,
    raw_query: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    params: Vec<(String, String)>,
    result: &'a [u8],
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, value) in input.headers.iter().take(32) {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(*name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let route = Route {
        method: "ANY".into(),
        path: "/{proxy+}".into(),
        function: "f".into(),
        payload_format: Default::default(),
        rate_limit: None,
        cache: None,
    };
    // The path as a client sent it, through the gateway's route table.
    let routes = [("GET", "/basket/{id}"), ("ANY", "/files/{proxy+}"), ("POST", "/")];
    let table = RouteTable::new(
        routes
            .iter()
            .map(|(method, path)| Route {
                method: method.to_string(),
                path: path.to_string(),
                ..route.clone()
            })
            .collect(),
    )
    .expect("valid routes");
    let _ = table.lookup(input.method, input.raw_path);
    let params: BTreeMap<String, String> = input.params.into_iter().take(8).collect();
    let req = GatewayRequest {
        method: input.method,
        raw_path: input.raw_path,
        raw_query: input.raw_query,
        headers: &headers,
        body: input.body,
        source_ip: "127.0.0.1",
        domain_name: "localhost",
        route: &route,
        path_parameters: &params,
        request_id: "r",
        time_ms: 0,
        stage: apigw::DEFAULT_STAGE,
        api_id: "api",
        account_id: "000000000000",
    };
    let _ = apigw::event_v2(&req);
    let _ = apigw::event_v1(&req);
    for mapped in [apigw::response_v2(input.result), apigw::response_v1(input.result)]
        .into_iter()
        .flatten()
    {
        assert!((100..=999).contains(&mapped.status), "{}", mapped.status);
        for (name, value) in &mapped.headers {
            assert!(HeaderName::try_from(name.as_str()).is_ok(), "{name:?}");
            assert!(HeaderValue::from_str(value).is_ok(), "{value:?}");
        }
    }
});
