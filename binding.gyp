{
  "variables": {
    "sft_have_mpi": "<!(node scripts/detect-mpi.cjs have)"
  },
  "target_defaults": {
    "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fno-trapping-math", "-fexceptions", "-Wall", "-Wno-unused-function"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"]
  },
  "targets": [
    {
      "target_name": "sft_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.cjs simd)"],
      "defines": ["SFT_ISA=2"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c", "-fPIC"]
    },
    {
      "target_name": "sft_avx512bf16",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.cjs bf16)"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mavx2", "-mfma", "-fPIC"]
    },
    {
      "target_name": "sft_amx",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.cjs amx)"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mamx-tile", "-mamx-bf16", "-mavx2", "-mfma", "-fPIC"]
    },
    {
      "target_name": "sft_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.cjs simd)"],
      "defines": ["SFT_ISA=1"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-fPIC"]
    },
    {
      "target_name": "sftkit",
      "sources": ["<!@(node scripts/list-sources.cjs base)"],
      "dependencies": ["sft_avx512", "sft_avx512bf16", "sft_amx", "sft_avx2"],
      "libraries": ["-lpthread"],
      "conditions": [
        ["sft_have_mpi==1", {
          "defines": ["SFT_HAVE_MPI=1"],
          "cflags_cc": ["<!@(node scripts/detect-mpi.cjs cflags)"],
          "libraries": ["<!@(node scripts/detect-mpi.cjs libs)", "-ldl"]
        }]
      ]
    }
  ]
}
