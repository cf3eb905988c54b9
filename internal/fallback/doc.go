// Package fallback owns HPCRUN_TEST_FALLBACK, the test-only switch that
// makes hpcrun take its fallback for a kernel feature as if the kernel
// lacked it. Clusters run kernels older than a development machine
// (RHEL 8 has 4.18), and each fallback must be tested on the machine the
// tests run on, not only where the feature is missing.
//
// The switch is a comma-separated list of Feature names, for example
// HPCRUN_TEST_FALLBACK=pidfd,mount_setattr. It is for tests only: a
// forced fallback is never faster or safer than the feature. The table
// of features, the kernels that have them and what hpcrun does without
// them is in docs/admin-guide.md.
package fallback
