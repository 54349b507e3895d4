//! The list of every check, in suite order, grouped by area: the one place a
//! check is listed.
//!
//! [`crate::all_checks`] is generated from it (each name calls the
//! constructor of that name in its area's module, so a name here that no
//! module defines does not compile, and a check defined and not listed here
//! is dead code), and so are the tests of [`crate::conformance_tests!`],
//! which need the names as identifiers.

/// Calls the macro path given with every check, grouped by area module, as
/// `path! { area: name name ...; area: ...; }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __uvm_conformance_with_checks {
    ($($callback:tt)*) => {
        $($callback)*! {
            lifecycle:
                lifecycle_new_vm_is_created
                lifecycle_start_from_created
                lifecycle_start_when_running_invalid
                lifecycle_start_when_paused_invalid
                lifecycle_start_when_stopped_invalid
                lifecycle_pause_from_running
                lifecycle_pause_when_created_invalid
                lifecycle_pause_when_paused_invalid
                lifecycle_pause_when_stopped_invalid
                lifecycle_resume_from_paused
                lifecycle_resume_when_created_invalid
                lifecycle_resume_when_running_invalid
                lifecycle_resume_when_stopped_invalid
                lifecycle_save_when_paused
                lifecycle_save_when_created_invalid
                lifecycle_save_when_running_invalid
                lifecycle_save_when_stopped_invalid
                lifecycle_restore_from_snapshot
                lifecycle_stop_from_created
                lifecycle_stop_from_running
                lifecycle_stop_while_paused
                lifecycle_stop_when_stopped_is_noop
                lifecycle_pause_resume_repeatedly
                lifecycle_guest_time_stops_while_paused
                lifecycle_every_call_on_stopped_vm_refused
                lifecycle_every_call_while_paused_follows_table;
            exit:
                exit_guest_poweroff_is_shutdown
                exit_guest_reboot_is_reboot
                exit_guest_panic_is_guest_panic
                exit_guest_crash_is_crash
                exit_force_stop_is_killed
                exit_graceful_stop_reason
                exit_stop_before_start_is_killed
                exit_stop_while_paused_is_killed
                exit_wait_after_exit_returns_at_once
                exit_wait_blocks_until_stopped
                exit_concurrent_waiters_same_status
                exit_guest_exit_wakes_every_waiter
                exit_failed_start_is_start_failed;
            stats:
                stats_before_start
                stats_uptime_advances_while_running
                stats_processor_matches_config
                stats_memory_matches_config
                stats_while_paused
                stats_frozen_after_stop
                stats_in_every_state;
            scsi:
                scsi_cold_plug_visible_after_start
                scsi_hot_add_visible_in_guest
                scsi_cold_and_hot_plug_agree
                scsi_same_lun_twice_already_exists
                scsi_changes_while_paused_invalid_state
                scsi_changes_after_stop_invalid_state
                scsi_hot_remove_leaves_guest
                scsi_cold_remove_before_start
                scsi_remove_then_readd_same_lun
                scsi_double_remove_not_found
                scsi_remove_unknown_not_found
                scsi_lun_reserved_until_removal_completes
                scsi_boot_config_disk_visible
                scsi_read_only_disk_refuses_guest_writes
                scsi_guest_writes_reach_host_image
                scsi_controller_twice_already_exists
                scsi_controller_beyond_limit_refused
                scsi_disk_on_missing_controller_not_found
                scsi_busy_controller_removal_invalid_argument
                scsi_empty_controller_removal_completes
                scsi_refused_format_changes_nothing
                scsi_remove_while_releasing_not_found
                scsi_remove_unknown_controller_not_found
                scsi_remove_disk_names_its_controller
                scsi_high_luns_remove_and_readd_at_own_address;
            vpmem:
                vpmem_cold_plug_visible_after_start
                vpmem_hot_add_visible_in_guest
                vpmem_cold_and_hot_plug_agree
                vpmem_same_slot_twice_already_exists
                vpmem_changes_while_paused_invalid_state
                vpmem_changes_after_stop_invalid_state
                vpmem_hot_remove_leaves_guest
                vpmem_cold_remove_before_start
                vpmem_remove_then_readd_same_slot
                vpmem_double_remove_not_found
                vpmem_remove_unknown_not_found
                vpmem_slot_reserved_until_removal_completes
                vpmem_boot_config_device_visible
                vpmem_controller_set_once
                vpmem_device_needs_controller
                vpmem_slot_beyond_max_devices_invalid_argument
                vpmem_image_beyond_max_size_invalid_argument
                vpmem_controller_refused_when_unclaimed
                vpmem_remove_while_releasing_not_found
                vpmem_zero_limit_controller_invalid_argument
                vpmem_last_slot_of_max_size_accepted
                vpmem_refused_image_leaves_slot_free;
            network:
                network_cold_plug_visible_after_start
                network_hot_add_visible_in_guest
                network_cold_and_hot_plug_agree
                network_same_id_twice_already_exists
                network_changes_while_paused_invalid_state
                network_changes_after_stop_invalid_state
                network_hot_remove_leaves_guest
                network_cold_remove_before_start
                network_remove_then_readd_same_id
                network_double_remove_not_found
                network_remove_unknown_not_found
                network_id_reserved_until_removal_completes
                network_boot_config_nic_visible
                network_same_mac_twice_already_exists
                network_several_nics_distinct_in_guest
                network_remove_while_releasing_not_found
                network_mac_follows_nic_through_removal
                network_long_ids_are_distinct;
            shares:
                shares_cold_plug_visible_after_start
                shares_hot_add_visible_in_guest
                shares_cold_and_hot_plug_agree
                shares_same_name_twice_already_exists
                shares_changes_while_paused_invalid_state
                shares_changes_after_stop_invalid_state
                shares_hot_remove_leaves_guest
                shares_cold_remove_before_start
                shares_remove_then_readd_same_name
                shares_double_remove_not_found
                shares_remove_unknown_not_found
                shares_name_reserved_until_removal_completes
                shares_boot_config_share_visible
                shares_read_only_refuses_guest_writes
                shares_guest_writes_reach_host_folder
                shares_allowed_files_limit_guest_view
                shares_same_name_across_kinds_coexist
                shares_remove_while_releasing_not_found
                shares_remove_names_its_kind;
            vsock:
                vsock_guest_dial_reaches_host_listener
                vsock_host_connect_reaches_guest_listener
                vsock_listen_before_start
                vsock_listen_while_paused
                vsock_listen_after_stop_invalid_state
                vsock_connect_outside_running_invalid_state
                vsock_connect_without_listener_io_error
                vsock_port_twice_already_exists
                vsock_dropped_listener_frees_port
                vsock_accept_fails_after_stop
                vsock_concurrent_guest_connections
                vsock_port_any_invalid_argument
                vsock_ports_above_16_bits_are_distinct;
            pci:
                pci_cold_plug_visible_after_start
                pci_hot_add_visible_in_guest
                pci_cold_and_hot_plug_agree
                pci_same_id_twice_already_exists
                pci_changes_while_paused_invalid_state
                pci_changes_after_stop_invalid_state
                pci_hot_remove_completes
                pci_cold_remove_before_start
                pci_remove_then_readd_same_id
                pci_double_remove_not_found
                pci_remove_unknown_not_found
                pci_id_reserved_until_removal_completes
                pci_remove_while_releasing_not_found;
            memory:
                memory_update_while_running
                memory_update_before_start
                memory_update_survives_pause_resume
                memory_update_to_odd_size_exact_or_refused
                memory_update_paused_or_stopped_invalid_state
                memory_update_out_of_range_invalid_argument;
            processor:
                processor_update_while_running
                processor_update_keeps_fields_not_given
                processor_limits_at_their_bounds_accepted
                processor_limits_unset_until_set
                processor_update_before_start
                processor_update_paused_or_stopped_invalid_state
                processor_limits_out_of_range_invalid_argument;
            cpu_group:
                cpu_group_set_while_running
                cpu_group_set_before_start
                cpu_group_unset_until_set
                cpu_group_set_paused_or_stopped_invalid_state
                cpu_group_empty_id_invalid_argument;
            truthfulness:
                truthfulness_supported_within_capabilities
                truthfulness_undefined_pairs_unsupported
                truthfulness_claims_have_managers
                truthfulness_answers_stable_across_states
                truthfulness_vpmem_add
                truthfulness_vpmem_remove
                truthfulness_scsi_add
                truthfulness_scsi_remove
                truthfulness_network_add
                truthfulness_network_remove
                truthfulness_vsmb_add
                truthfulness_vsmb_remove
                truthfulness_pci_add
                truthfulness_pci_remove
                truthfulness_plan9_add
                truthfulness_plan9_remove
                truthfulness_virtio_fs_add
                truthfulness_virtio_fs_remove
                truthfulness_vm_socket_add
                truthfulness_memory_update
                truthfulness_processor_update
                truthfulness_cpu_group_update
                truthfulness_action_pause
                truthfulness_action_resume
                truthfulness_action_save
                truthfulness_unclaimed_restore_refused
                truthfulness_claimed_guest_os_creates;
            bad_input:
                bad_input_invalid_config_refused
                bad_input_invalid_config_lists_every_problem
                bad_input_invalid_boot_devices_refused
                bad_input_unsupported_guest_os_refused
                bad_input_scsi_relative_path
                bad_input_scsi_missing_image
                bad_input_scsi_lun_out_of_range
                bad_input_vpmem_relative_path
                bad_input_vpmem_missing_image
                bad_input_nic_malformed_id
                bad_input_nic_empty_endpoint
                bad_input_share_relative_path
                bad_input_share_file_not_folder
                bad_input_share_escaping_allowed_file
                bad_input_share_malformed_name
                bad_input_pci_malformed_id
                bad_input_pci_missing_device;
            concurrency:
                concurrency_hot_adds_different_luns_all_land
                concurrency_hot_adds_different_nics_all_land
                concurrency_same_lun_race_one_wins
                concurrency_concurrent_stops
                concurrency_concurrent_starts_one_wins
                concurrency_adds_racing_stop
                concurrency_pause_resume_race
                concurrency_stats_during_lifecycle
                concurrency_vms_are_isolated
                concurrency_scsi_disk_stays_in_its_vm
                concurrency_vpmem_device_stays_in_its_vm
                concurrency_nic_stays_in_its_vm
                concurrency_share_stays_in_its_vm
                concurrency_pci_device_stays_in_its_vm
                concurrency_vsock_ports_are_per_vm
                concurrency_resource_updates_stay_in_their_vm;
            cleanup:
                cleanup_no_thread_or_fd_leak_after_100_vms
                cleanup_no_thread_or_fd_leak_after_100_hot_plugs
                cleanup_no_task_leak_after_100_vms
                cleanup_images_closed_after_stop
                cleanup_image_closed_after_removal
                cleanup_pending_removals_complete_on_stop
                cleanup_dropped_scsi_removal_not_cancelled;
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_prefixed_by_area() {
        let checks = crate::all_checks();
        let mut names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), checks.len(), "duplicate check names");
        for c in &checks {
            assert!(
                c.name.starts_with(&format!("{}_", c.area.as_str()))
                    || (c.area == crate::Area::Shares && c.name.starts_with("shares_")),
                "{} does not start with its area {}",
                c.name,
                c.area
            );
            assert!(!c.description.is_empty());
        }
        assert!(checks.len() >= 60, "only {} checks", checks.len());
    }

    #[test]
    fn checks_are_grouped_by_area_in_report_order() {
        let areas: Vec<crate::Area> = crate::all_checks().iter().map(|c| c.area).collect();
        let mut grouped = areas.clone();
        grouped.sort_by_key(|a| crate::Area::ALL.iter().position(|x| x == a));
        assert_eq!(areas, grouped);
        for area in crate::Area::ALL {
            assert!(
                !crate::area_checks(area).is_empty(),
                "area {area} has no checks"
            );
        }
    }
}
