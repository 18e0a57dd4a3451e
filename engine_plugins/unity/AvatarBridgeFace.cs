// AvatarBridgeFace.cs — Unity component: reads the avatar-bridge bus on a background thread and applies
// the 52 ARKit blendshapes to a SkinnedMeshRenderer (by name) and the head rotation to a Transform.
// Needs AvatarBridgeClient.cs and the libzmq native plugin (see README.md). Compiled out outside Unity.
#if UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.Threading;
using UnityEngine;

namespace AvatarBridge
{
    /// <summary>One ARKit name -> the mesh's own blendshape name, for meshes not named after ARKit.</summary>
    [Serializable]
    public class BlendShapeMapping
    {
        public string arkitName = "jawOpen";
        public string meshBlendShape = "";
    }

    /// <summary>Drives a face mesh and a head bone from `avatar-bridge run`; the newest message wins.</summary>
    public class AvatarBridgeFace : MonoBehaviour
    {
        [Tooltip("The daemon's bus endpoint (its --bus option).")]
        public string endpoint = "tcp://127.0.0.1:5570";

        [Header("Blendshapes")]
        public SkinnedMeshRenderer face;
        [Tooltip("Mesh blendshape name = prefix + ARKit name (e.g. \"blendShape1.\" for some FBX exports).")]
        public string blendShapePrefix = "";
        public bool ignoreCase = true;
        [Tooltip("Per-shape names that differ from prefix + ARKit name; an empty meshBlendShape disables that shape.")]
        public List<BlendShapeMapping> mapping = new List<BlendShapeMapping>();
        [Tooltip("Wire values are 0..1; Unity's blendshape weights are 0..100.")]
        public float weightScale = 100f;

        [Header("Head")]
        public Transform head;
        public bool applyHeadRotation = true;
        [Tooltip("Move the head by the change in position since the first frame (metres, Unity axes).")]
        public bool applyHeadPosition = false;

        /// <summary>Messages skipped as malformed (wrong schema, wrong name table, garbage); see the Console.</summary>
        public long Malformed { get { return Interlocked.Read(ref _malformed); } }
        public long LastSeq { get; private set; }

        readonly object _lock = new object();
        FaceFrame _latest;
        Thread _thread;
        volatile bool _running;
        long _malformed;
        long _applied = -1;
        int[] _shapeIndex;
        Quaternion _restRotation;
        Vector3 _restPosition;
        Vector3? _firstPosition;

        void OnEnable()
        {
            _shapeIndex = ResolveShapes();
            if (head != null) { _restRotation = head.localRotation; _restPosition = head.localPosition; }
            _running = true;
            _thread = new Thread(ReadLoop) { IsBackground = true, Name = "avatar-bridge SUB" };
            _thread.Start();
        }

        void OnDisable()
        {
            _running = false;
            if (_thread != null && !_thread.Join(1000)) Debug.LogWarning("avatar-bridge: reader thread did not stop in 1 s");
            _thread = null;
        }

        // The socket lives and dies on this thread: ZeroMQ sockets must not be shared across threads.
        void ReadLoop()
        {
            try
            {
                using (var sub = new Subscriber())
                {
                    sub.OnMalformed = reason =>
                    {
                        Interlocked.Increment(ref _malformed);
                        Debug.LogWarning("avatar-bridge: skipped a malformed face message: " + reason);
                    };
                    sub.Connect(endpoint);
                    while (_running)
                    {
                        FaceFrame frame;
                        if (sub.Receive(out frame, 100)) lock (_lock) _latest = frame;
                    }
                }
            }
            catch (DllNotFoundException e)
            {
                Debug.LogError("avatar-bridge: the libzmq native plugin is missing (" + e.Message + "). Put libzmq.dll " +
                               "(Windows) / libzmq.dylib (macOS) / libzmq.so (Linux) under Assets/Plugins; see engine_plugins/unity/README.md");
            }
            catch (Exception e)
            {
                Debug.LogError("avatar-bridge: the bus reader stopped: " + e.Message);
            }
        }

        int[] ResolveShapes()
        {
            var index = new int[ArkitNames.Count];
            if (face == null || face.sharedMesh == null) { for (int i = 0; i < index.Length; i++) index[i] = -1; return index; }
            Mesh mesh = face.sharedMesh;
            var byName = new Dictionary<string, int>(ignoreCase ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
            for (int k = 0; k < mesh.blendShapeCount; k++) byName[mesh.GetBlendShapeName(k)] = k;
            var overrides = new Dictionary<string, string>();
            foreach (var m in mapping) if (m != null && !string.IsNullOrEmpty(m.arkitName)) overrides[m.arkitName] = m.meshBlendShape ?? "";
            var missing = new List<string>();
            for (int i = 0; i < ArkitNames.Count; i++)
            {
                string arkit = ArkitNames.All[i];
                string target;
                if (!overrides.TryGetValue(arkit, out target)) target = blendShapePrefix + arkit;
                int k;
                index[i] = target.Length > 0 && byName.TryGetValue(target, out k) ? k : -1;
                if (index[i] < 0 && target.Length > 0) missing.Add(target);
            }
            if (missing.Count > 0)
                Debug.Log("avatar-bridge: " + mesh.name + " has no blendshape named " + string.Join(", ", missing.ToArray()) +
                          "; add entries to 'mapping' for shapes named differently");
            return index;
        }

        void Update()
        {
            FaceFrame f;
            lock (_lock) f = _latest;
            if (f == null || f.Seq == _applied) return;
            _applied = f.Seq;
            LastSeq = f.Seq;

            if (face != null)
                for (int i = 0; i < ArkitNames.Count; i++)
                    if (_shapeIndex[i] >= 0) face.SetBlendShapeWeight(_shapeIndex[i], f.Bs[i] * weightScale);

            if (head == null) return;
            UnityPose pose = Conventions.ToUnity(f);
            if (applyHeadRotation)
                head.localRotation = _restRotation * new Quaternion((float)pose.Qx, (float)pose.Qy, (float)pose.Qz, (float)pose.Qw);
            if (applyHeadPosition)
            {
                var p = new Vector3((float)pose.Px, (float)pose.Py, (float)pose.Pz);
                if (!_firstPosition.HasValue) _firstPosition = p;
                head.localPosition = _restPosition + (p - _firstPosition.Value);
            }
        }
    }
}
#endif
