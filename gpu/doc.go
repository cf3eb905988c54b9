// Package gpu finds a GPU driver's user space on the host, for --gpu (--nv)
// and --rocm, and says what a job needs to use it: binds of the driver's
// libraries and tools into a private directory, and the environment that
// points at it.
//
// The driver's libraries must match the kernel module, so they come from
// the host, never from the image. Find reads glibc's ld.so.cache
// (ParseLdCache) for the driver's 64-bit libraries of the host's
// architecture, looks for its executables (nvidia-smi) in the usual bin
// directories, and lists its device nodes. Driver.Binds puts each file,
// read-only, under /.hpcrun/VENDOR/lib and /.hpcrun/VENDOR/bin, a path that
// hpcrun makes in its tmpfs underlay, so the image is never modified;
// Driver.Env puts that lib directory first in LD_LIBRARY_PATH and the bin
// directory last in PATH. Find takes a Host, the machine as a value (a
// root directory, the cache's path, the environment), so its tests run on
// a fake driver tree.
//
// hpcrun uses it so, before the job's environment and mounts are built. A
// node without the driver fails the job as any other error does (exit
// 125); ErrNoDriver tells that case apart from a host that could not be
// read, as the tests that skip on a node without a GPU do:
//
//	d, err := gpu.Find(gpu.NVIDIA, gpu.Host{Env: os.Environ()})
//	if err != nil {
//		return fmt.Errorf("--gpu: %w", err)
//	}
//	envOpts.Set = append(slices.Clone(d.Binding), envOpts.Set...)
//	env := d.Env(jobs.ContainerEnv(envOpts))
//	mountOpts.Binds = append(d.Binds(), mountOpts.Binds...)
//
// # Which GPUs a job gets
//
// hpcrun binds the host's /dev whole, so the job sees every /dev/nvidiaN
// (or /dev/dri/renderDN) that the node has, and may open the ones that the
// host lets it: under Slurm with ConstrainDevices=yes, the job's device
// cgroup, which hpcrun leaves as it is, lets it open only its own GPUs.
// Which of them a program uses is chosen by variables that reach the job
// unchanged:
//
//   - Slurm's --gpus and --gres=gpu set CUDA_VISIBLE_DEVICES (or
//     ROCR_VISIBLE_DEVICES) and GPU_DEVICE_ORDINAL for each task, and
//     SLURM_STEP_GPUS and SLURM_JOB_GPUS, which name the same GPUs;
//   - the user may set CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER,
//     HIP_VISIBLE_DEVICES; NVIDIA_VISIBLE_DEVICES is the one that
//     enroot and nvidia-container-toolkit read;
//   - Slurm's MPS sharing sets CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, and sites
//     set CUDA_MPS_PIPE_DIRECTORY (MPS's pipes are in /tmp, which hpcrun
//     binds).
//
// The SLURM_* ones always pass into the container (see package jobs).
// Driver.Binding holds the others that the host sets, K=V; the caller puts
// them in jobs.EnvOptions.Set ahead of --env-file and --env, so that they
// pass even with --cleanenv and win over the image's (NVIDIA's CUDA images
// set NVIDIA_VISIBLE_DEVICES=all), while the user's own --env still wins.
//
// hpcrun does not hide the /dev/nvidiaN that the binding leaves out, as
// nvidia-container-toolkit does, for three reasons. CUDA_VISIBLE_DEVICES
// counts GPUs in CUDA's order (fastest first by default) or names them by
// UUID or MIG instance, and neither maps to a device's minor number without
// asking the driver (NVML, which needs cgo or a helper). Hiding renumbers:
// CUDA counts only the GPUs it can open, so where the device cgroup does
// not constrain a job, Slurm's CUDA_VISIBLE_DEVICES=2 names the node's
// third GPU, and a container that shows only /dev/nvidia2 leaves CUDA one
// GPU, number 0, which the variable then misses. And hiding protects
// nothing: the same user can open the node outside the container. What
// keeps jobs apart is the scheduler's device cgroup.
package gpu
