//! A webhook delivery: the `X-Gitlab-Event` header (the input's first line) and any body (the rest), read
//! as intake reads it, then mapped as the worker maps it. Nothing may panic.
#![no_main]

use gfj_core::gitlab::{EventKind, WebhookEvent};
use gfj_core::mapping::{self, merge_request, pipeline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let kind = EventKind::from_header(&String::from_utf8_lossy(header));
    match WebhookEvent::parse(kind, body) {
        Ok(WebhookEvent::Push(push)) | Ok(WebhookEvent::TagPush(push)) => {
            let _ = mapping::map_push(&push, 1, push.commits.first());
        }
        Ok(WebhookEvent::MergeRequest(ev)) => {
            let _ = merge_request::map_merge_request(&ev, 1, Default::default());
        }
        Ok(WebhookEvent::Pipeline(ev)) => {
            let _ = pipeline::map_pipeline(&ev, 1);
        }
        _ => {}
    }
});
