// What the preview page takes from npm; esbuild bundles only these (and what they import).
export * as THREE from "three";
export { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
export { decode as decodeMsgpack } from "@msgpack/msgpack";
