//! Statistics move while the guest runs and freeze when it is paused or stopped.
//! Tokio time is paused here, so every figure is exact.
#![cfg(test)]

mod support;

use std::time::Duration;

use support::*;
use tokio::time::advance;
use uvm_api::{StopMode, Uvm};

const MIB: u64 = 1 << 20;

#[tokio::test(start_paused = true)]
async fn stats_follow_the_lifecycle() {
    let vm = created("stats").await;
    let s = vm.stats().await.unwrap();
    assert_eq!(s.uptime, Duration::ZERO);
    assert_eq!(s.processor.per_vcpu, vec![Duration::ZERO; 2]);
    assert_eq!(s.processor.total_runtime, Duration::ZERO);
    assert_eq!(s.memory.assigned_bytes, 512 * MIB);
    assert_eq!(s.memory.host_resident_bytes, Some(0));
    assert_eq!(s.memory.guest_available_bytes, None);

    advance(Duration::from_secs(5)).await;
    assert_eq!(
        vm.stats().await.unwrap().uptime,
        Duration::ZERO,
        "moves before start"
    );

    vm.start().await.unwrap();
    advance(Duration::from_secs(10)).await;
    let s = vm.stats().await.unwrap();
    assert_eq!(s.uptime, Duration::from_secs(10));
    assert_eq!(s.processor.per_vcpu, vec![Duration::from_secs(1); 2]);
    assert_eq!(s.processor.total_runtime, Duration::from_secs(2));
    let resident = s.memory.host_resident_bytes.unwrap();
    assert!(resident > 0 && resident <= s.memory.assigned_bytes);
    let available = s.memory.guest_available_bytes.unwrap();
    assert!(available > 0 && available <= s.memory.assigned_bytes);
    assert_eq!(
        vm.guest_probe().unwrap().uptime().await.unwrap(),
        Duration::from_secs(10)
    );

    vm.pause().await.unwrap();
    advance(Duration::from_secs(10)).await;
    let s = vm.stats().await.unwrap();
    assert_eq!(s.uptime, Duration::from_secs(20), "uptime includes pauses");
    assert_eq!(
        s.processor.per_vcpu,
        vec![Duration::from_secs(1); 2],
        "vCPUs ran while paused"
    );
    assert_eq!(s.memory.guest_available_bytes, None);

    vm.resume().await.unwrap();
    advance(Duration::from_secs(10)).await;
    let s = vm.stats().await.unwrap();
    assert_eq!(s.uptime, Duration::from_secs(30));
    assert_eq!(s.processor.total_runtime, Duration::from_secs(4));
    assert_eq!(s.counters.get("pauses"), Some(&1));
    assert_eq!(s.counters.get("resumes"), Some(&1));

    vm.stop(StopMode::Force).await.unwrap();
    let at_stop = vm.stats().await.unwrap();
    advance(Duration::from_secs(100)).await;
    let later = vm.stats().await.unwrap();
    assert_eq!(later, at_stop, "figures move after stop");
    assert_eq!(later.uptime, Duration::from_secs(30));
    assert_eq!(later.memory.guest_available_bytes, None);
}

#[tokio::test(start_paused = true)]
async fn per_vcpu_figures_follow_the_vcpu_count() {
    let vm = backend()
        .create_fake(config("cpus").vcpus(8).build().unwrap())
        .await
        .unwrap();
    vm.start().await.unwrap();
    advance(Duration::from_secs(20)).await;
    let s = vm.stats().await.unwrap();
    assert_eq!(s.processor.per_vcpu.len(), 8);
    assert_eq!(
        s.processor.total_runtime,
        s.processor.per_vcpu.iter().sum::<Duration>()
    );
    assert_eq!(s.processor.total_runtime, Duration::from_secs(16));
}

#[tokio::test]
async fn stats_really_move_in_real_time() {
    let vm = running("real").await;
    let a = vm.stats().await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b = vm.stats().await.unwrap();
    assert!(b.uptime >= a.uptime + Duration::from_millis(30));
    assert!(b.processor.total_runtime > a.processor.total_runtime);
}
