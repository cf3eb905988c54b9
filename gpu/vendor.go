package gpu

// Vendor names a GPU driver stack that Find looks for.
type Vendor string

const (
	// NVIDIA is the proprietary or open NVIDIA driver: --gpu, --nv.
	NVIDIA Vendor = "nvidia"
	// ROCm is AMD's amdgpu driver with the ROCm user space: --rocm.
	ROCm Vendor = "rocm"
)

// vendor is what Find looks for and what it demands of one driver stack.
type vendor struct {
	name     string   // for messages
	libs     []string // library names without ".so": each matches NAME.so and NAME.so.*
	bins     []string // executables, looked up in Host.BinDirs
	devices  []string // globs of the device nodes, for the record and the checks
	needLib  string   // the soname without which there is no driver
	needDev  string   // the device node without which there is no driver
	version  string   // the library whose file name gives the driver's version ("" for none)
	module   string   // the kernel module's version file, compared with that version
	binding  []string // variables that choose the job's GPUs
	noDriver string   // how to check and what to do, after what is missing
}

var vendors = map[Vendor]vendor{
	NVIDIA: {
		name: "NVIDIA",
		// The driver's user-space libraries, as libnvidia-container
		// (src/nvc_info.c) and Apptainer (etc/nvliblist.conf) list them,
		// less the GLVND loaders (libGL, libEGL, libGLX, libOpenGL,
		// libGLdispatch) and the OpenCL ICD loader, which belong to the
		// image, and the X server's modules.
		libs: []string{
			// compute
			"libcuda", "libcudadebugger", "libnvidia-ptxjitcompiler", "libnvidia-nvvm", "libnvidia-opencl",
			"libnvidia-compiler", "libnvidia-fatbinaryloader", "libnvidia-allocator", "libnvidia-gpucomp",
			"libnvidia-pkcs11", "libnvidia-pkcs11-openssl3", "libnvidia-tileiras",
			// management
			"libnvidia-ml", "libnvidia-cfg", "libnvidia-nscq",
			// video
			"libnvidia-encode", "libnvcuvid", "libnvidia-opticalflow", "libvdpau_nvidia",
			// graphics, ray tracing, NGX
			"libnvidia-eglcore", "libnvidia-glcore", "libnvidia-tls", "libnvidia-glsi", "libnvidia-fbc",
			"libnvidia-ifr", "libnvidia-rtcore", "libnvoptix", "libnvidia-ngx", "libnvidia-cbl",
			"libGLX_nvidia", "libEGL_nvidia", "libGLESv2_nvidia", "libGLESv1_CM_nvidia", "libnvidia-glvkspirv",
		},
		bins: []string{
			"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced",
			"nvidia-cuda-mps-control", "nvidia-cuda-mps-server",
		},
		// nvidiactl, nvidia0..N, nvidia-uvm(-tools), nvidia-modeset,
		// nvidia-nvswitchN; nvidia-caps/ holds the MIG capabilities.
		devices: []string{"/dev/nvidia*", "/dev/nvidia-caps/*"},
		needLib: "libcuda.so.1",
		needDev: "/dev/nvidiactl",
		version: "libcuda.so.1",
		module:  "/sys/module/nvidia/version",
		binding: []string{
			"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
			"CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
		},
		noDriver: "check on the node with `nvidia-smi` and `ldconfig -p | grep libcuda`, " +
			"and run the job on a GPU node (Slurm: a GPU partition, with --gpus=N or --gres=gpu:N); " +
			"`module load cuda` gives the CUDA toolkit, not the driver",
	},
	ROCm: {
		name: "ROCm",
		// The HIP and HSA runtimes and what they load, as Apptainer's
		// etc/rocmliblist.conf has them, less the math libraries
		// (rocBLAS, MIOpen, ...), which belong to the image. libdrm,
		// libnuma and libelf are generic, but the host's ROCm was built
		// against the host's copies.
		libs: []string{
			"libamdhip64", "libhsa-runtime64", "libhsakmt", "libamd_comgr", "libhiprtc", "libhiprtc-builtins",
			"librocprofiler-register", "librocm_smi64", "libamd_smi", "libamdocl64",
			"libdrm", "libdrm_amdgpu", "libnuma", "libelf",
		},
		// rocm-smi and amd-smi are Python scripts that find their modules
		// next to their real path, so one bound file would not run.
		bins:    []string{"rocminfo"},
		devices: []string{"/dev/kfd", "/dev/dri/card*", "/dev/dri/renderD*"},
		needLib: "libhsa-runtime64.so.1",
		needDev: "/dev/kfd",
		binding: []string{"ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "CUDA_VISIBLE_DEVICES"},
		noDriver: "check on the node with `rocminfo` and `ldconfig -p | grep hsa-runtime`, " +
			"and run the job on an AMD GPU node (Slurm: a GPU partition, with --gpus=N or --gres=gpu:N); " +
			"an image that ships its own ROCm (the rocm/* images) needs only /dev/kfd and /dev/dri, " +
			"which it has without --rocm: hpcrun binds the host's /dev",
	},
}

// DefaultBinDirs are where Find looks for the drivers' executables, in
// order, when Host.BinDirs is empty.
var DefaultBinDirs = []string{
	"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/opt/rocm/bin",
}

// ControlDevice is the device node without which a node has no usable
// driver of v (/dev/nvidiactl, /dev/kfd): present, it says the node has
// the GPU and its kernel module, whatever the libraries. "" for an unknown
// vendor.
func (v Vendor) ControlDevice() string { return vendors[v].needDev }
