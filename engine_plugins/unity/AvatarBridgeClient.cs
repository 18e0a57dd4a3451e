// AvatarBridgeClient.cs — a dependency-free C# subscriber for the avatar-bridge bus, wire schema v1.
//
// The wire spec is docs/protocol.md; Wire.DecodeFace refuses exactly what avatar_bridge/bus/wire.py's
// validate_face refuses. Written by hand because Unity projects cannot rely on NuGet: ZeroMQ is
// reached through P/Invoke to the native libzmq (no NetMQ/clrzmq), and msgpack through the small
// decoder below (no MessagePack-CSharp), which reads only what schema v1 needs.
// Plain C# 6 (compiles with Mono's mcs and Unity's compiler); no UnityEngine types in this file.

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace AvatarBridge
{
    /// <summary>The 52 ARKit blendshape names in wire order (Apple's ARFaceAnchor.BlendShapeLocation).</summary>
    public static class ArkitNames
    {
        public const int Count = 52;
        /// <summary>CRC-32 (zlib) of the names joined by ","; the wire's names_hash.</summary>
        public const uint NamesHash = 3033183245u;

        public static readonly string[] All = {
            "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
            "eyeSquintLeft", "eyeWideLeft",
            "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
            "eyeSquintRight", "eyeWideRight",
            "jawForward", "jawLeft", "jawRight", "jawOpen",
            "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
            "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
            "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
            "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
            "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
            "mouthUpperUpLeft", "mouthUpperUpRight",
            "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
            "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
            "noseSneerLeft", "noseSneerRight",
            "tongueOut",
        };

        /// <summary>CRC-32 of the table as compiled; equals NamesHash unless someone edited the table.</summary>
        public static uint ComputeHash()
        {
            uint crc = 0xFFFFFFFFu;
            foreach (byte b in Encoding.ASCII.GetBytes(string.Join(",", All)))
            {
                crc ^= b;
                for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1u));
            }
            return ~crc;
        }
    }

    /// <summary>One schema-v1 face message; units and axes as in docs/protocol.md (camera space, metres, radians).</summary>
    public sealed class FaceFrame
    {
        public long Seq;                                   // +1 per message; a gap means messages were missed
        public double T;                                   // capture time, seconds; use differences only
        public double Tp;                                  // publish time (optional key; 0 when absent)
        public long Frame = -1;                            // source frame index (optional key)
        public readonly float[] Bs = new float[ArkitNames.Count];  // 0..1, in ArkitNames.All order
        public readonly float[] HeadQ = { 0f, 0f, 0f, 1f };        // (x, y, z, w), head -> camera space
        public readonly float[] HeadP = new float[3];              // metres, camera space
        public readonly float[] GazeL = new float[2];              // performer's left eye (yaw, pitch), radians
        public readonly float[] GazeR = new float[2];
        public float Conf;
        public bool Present;                               // false: no face; values are hold/ease output, safe to apply
        public uint NamesHash;
    }

    /// <summary>A payload that is not a valid schema-v1 face message; the message names the field.</summary>
    public sealed class WireException : Exception
    {
        public WireException(string message) : base(message) { }
    }

    /// <summary>A head pose in Unity's axes: left-handed, x right, y up, z forward; metres.</summary>
    public struct UnityPose
    {
        public double Qx, Qy, Qz, Qw;   // feed to UnityEngine.Quaternion(x, y, z, w)
        public double Px, Py, Pz;
    }

    /// <summary>Axis conventions, the same math as avatar_bridge/conventions.py.</summary>
    public static class Conventions
    {
        /// <summary>conventions.to_unity: basis A = diag(-1, 1, 1); a quaternion's axis is a
        /// pseudovector, so q' = (-A v, w) = (x, -y, -z, w). The avatar mirrors the performer, as VSeeFace expects.</summary>
        public static UnityPose ToUnity(double qx, double qy, double qz, double qw, double px, double py, double pz)
        {
            return new UnityPose { Qx = qx, Qy = -qy, Qz = -qz, Qw = qw, Px = -px, Py = py, Pz = pz };
        }

        public static UnityPose ToUnity(FaceFrame f)
        {
            return ToUnity(f.HeadQ[0], f.HeadQ[1], f.HeadQ[2], f.HeadQ[3], f.HeadP[0], f.HeadP[1], f.HeadP[2]);
        }
    }

    /// <summary>Minimal msgpack decoder: nil, bool, ints, float32/64, str, bin, array, map, ext.
    /// Maps become Dictionary&lt;object, object&gt; (last key wins, as a Python dict), arrays object[],
    /// ints long (ulong above long.MaxValue), floats float or double, str string (strict UTF-8), bin/ext byte[].</summary>
    public static class MsgPack
    {
        static readonly Encoding Utf8 = new UTF8Encoding(false, true);  // throw on invalid UTF-8, as Python does
        const int MaxDepth = 64;

        public static object Unpack(byte[] data)
        {
            int pos = 0;
            object value = Read(data, ref pos, 0);
            if (pos != data.Length) throw new WireException("payload is not msgpack: extra bytes after the map");
            return value;
        }

        static void Need(byte[] d, int pos, long n)
        {
            if (n < 0 || pos + n > d.Length) throw new WireException("payload is not msgpack: truncated");
        }

        static ulong Big(byte[] d, ref int pos, int n)
        {
            Need(d, pos, n);
            ulong v = 0;
            for (int i = 0; i < n; i++) v = (v << 8) | d[pos + i];
            pos += n;
            return v;
        }

        static object Int(ulong u) { return u > long.MaxValue ? (object)u : (object)(long)u; }

        static object Read(byte[] d, ref int pos, int depth)
        {
            if (depth > MaxDepth) throw new WireException("payload is not msgpack: nested too deeply");
            Need(d, pos, 1);
            byte b = d[pos++];
            if (b <= 0x7f) return (long)b;
            if (b >= 0xe0) return (long)(sbyte)b;
            if ((b & 0xf0) == 0x80) return Map(d, ref pos, b & 0x0f, depth);
            if ((b & 0xf0) == 0x90) return Array(d, ref pos, b & 0x0f, depth);
            if ((b & 0xe0) == 0xa0) return Str(d, ref pos, b & 0x1f);
            switch (b)
            {
                case 0xc0: return null;
                case 0xc2: return false;
                case 0xc3: return true;
                case 0xc4: return Bytes(d, ref pos, (long)Big(d, ref pos, 1));
                case 0xc5: return Bytes(d, ref pos, (long)Big(d, ref pos, 2));
                case 0xc6: return Bytes(d, ref pos, (long)Big(d, ref pos, 4));
                case 0xc7: { long n = (long)Big(d, ref pos, 1); pos += 1; return Bytes(d, ref pos, n); }
                case 0xc8: { long n = (long)Big(d, ref pos, 2); pos += 1; return Bytes(d, ref pos, n); }
                case 0xc9: { long n = (long)Big(d, ref pos, 4); pos += 1; return Bytes(d, ref pos, n); }
                case 0xca: return BitConverter.ToSingle(BitConverter.GetBytes((int)(uint)Big(d, ref pos, 4)), 0);
                case 0xcb: return BitConverter.Int64BitsToDouble((long)Big(d, ref pos, 8));
                case 0xcc: return Int(Big(d, ref pos, 1));
                case 0xcd: return Int(Big(d, ref pos, 2));
                case 0xce: return Int(Big(d, ref pos, 4));
                case 0xcf: return Int(Big(d, ref pos, 8));
                case 0xd0: return (long)(sbyte)Big(d, ref pos, 1);
                case 0xd1: return (long)(short)Big(d, ref pos, 2);
                case 0xd2: return (long)(int)Big(d, ref pos, 4);
                case 0xd3: return (long)Big(d, ref pos, 8);
                case 0xd4: pos += 1; return Bytes(d, ref pos, 1);
                case 0xd5: pos += 1; return Bytes(d, ref pos, 2);
                case 0xd6: pos += 1; return Bytes(d, ref pos, 4);
                case 0xd7: pos += 1; return Bytes(d, ref pos, 8);
                case 0xd8: pos += 1; return Bytes(d, ref pos, 16);
                case 0xd9: return Str(d, ref pos, (long)Big(d, ref pos, 1));
                case 0xda: return Str(d, ref pos, (long)Big(d, ref pos, 2));
                case 0xdb: return Str(d, ref pos, (long)Big(d, ref pos, 4));
                case 0xdc: return Array(d, ref pos, (long)Big(d, ref pos, 2), depth);
                case 0xdd: return Array(d, ref pos, (long)Big(d, ref pos, 4), depth);
                case 0xde: return Map(d, ref pos, (long)Big(d, ref pos, 2), depth);
                case 0xdf: return Map(d, ref pos, (long)Big(d, ref pos, 4), depth);
                default: throw new WireException("payload is not msgpack: reserved byte 0xc1");
            }
        }

        static byte[] Bytes(byte[] d, ref int pos, long n)
        {
            Need(d, pos, n);
            var b = new byte[n];
            System.Array.Copy(d, pos, b, 0, (int)n);
            pos += (int)n;
            return b;
        }

        static string Str(byte[] d, ref int pos, long n)
        {
            Need(d, pos, n);
            string s;
            try { s = Utf8.GetString(d, pos, (int)n); }
            catch (DecoderFallbackException) { throw new WireException("payload is not msgpack: a string is not valid UTF-8"); }
            pos += (int)n;
            return s;
        }

        static object[] Array(byte[] d, ref int pos, long n, int depth)
        {
            Need(d, pos, n);  // every element takes at least one byte: a larger count is garbage, not an allocation
            var a = new object[n];
            for (long i = 0; i < n; i++) a[i] = Read(d, ref pos, depth + 1);
            return a;
        }

        static Dictionary<object, object> Map(byte[] d, ref int pos, long n, int depth)
        {
            Need(d, pos, 2 * n);
            var m = new Dictionary<object, object>();
            for (long i = 0; i < n; i++)
            {
                object key = Read(d, ref pos, depth + 1);
                object value = Read(d, ref pos, depth + 1);
                if (key != null) m[key] = value;  // a nil key can never name a schema field
            }
            return m;
        }
    }

    /// <summary>Schema-v1 decoding: DecodeFace validates like avatar_bridge/bus/wire.py and throws WireException.</summary>
    public static class Wire
    {
        public const int SchemaVersion = 1;
        public const string TopicFace = "face";

        static bool IsInt(object o) { return o is long || o is ulong; }
        static bool IsNumber(object o) { return IsInt(o) || o is float || o is double; }  // never bool
        static double AsDouble(object o)
        {
            if (o is long) return (long)o;
            if (o is ulong) return (ulong)o;
            if (o is float) return (float)o;
            return (double)o;
        }

        static object Get(Dictionary<object, object> map, string key)
        {
            object v;
            return map.TryGetValue(key, out v) ? v : null;
        }

        static object Required(Dictionary<object, object> map, string key)
        {
            if (!map.ContainsKey(key)) throw new WireException("missing field '" + key + "'");
            return map[key];
        }

        static void Floats(object value, float[] dest, string field)
        {
            var a = value as object[];
            if (a == null || a.Length != dest.Length)
                throw new WireException("field '" + field + "' must be a list of " + dest.Length + " numbers");
            for (int i = 0; i < a.Length; i++)
            {
                if (!IsNumber(a[i]) || double.IsNaN(AsDouble(a[i])) || double.IsInfinity(AsDouble(a[i])))
                    throw new WireException("field '" + field + "' holds a non-finite or non-number value");
                dest[i] = (float)AsDouble(a[i]);
            }
        }

        /// <summary>Decode and validate one face payload (the second frame of [topic, payload]).</summary>
        public static FaceFrame DecodeFace(byte[] payload)
        {
            var msg = MsgPack.Unpack(payload) as Dictionary<object, object>;
            if (msg == null) throw new WireException("a face message must be a map");
            object v = Get(msg, "v");
            if (!(v is long) || (long)v != SchemaVersion)
                throw new WireException("unsupported schema version; this reader speaks v" + SchemaVersion);

            var f = new FaceFrame();
            object seq = Required(msg, "seq");
            if (!(seq is long)) throw new WireException("field 'seq' has the wrong type");  // ulong: out of range
            f.Seq = (long)seq;
            object t = Required(msg, "t");
            if (!IsNumber(t)) throw new WireException("field 't' has the wrong type");
            f.T = AsDouble(t);
            object namesHash = Required(msg, "names_hash");
            if (!IsInt(namesHash)) throw new WireException("field 'names_hash' has the wrong type");
            object conf = Required(msg, "conf");
            if (!IsNumber(conf)) throw new WireException("field 'conf' has the wrong type");
            f.Conf = (float)AsDouble(conf);
            object present = Required(msg, "present");
            if (!(present is bool)) throw new WireException("field 'present' has the wrong type");
            f.Present = (bool)present;
            if (!(namesHash is long) || (long)namesHash != ArkitNames.NamesHash)
                throw new WireException("names_hash does not match this reader's ARKit name table");
            f.NamesHash = ArkitNames.NamesHash;

            Floats(Get(msg, "bs"), f.Bs, "bs");
            var head = Get(msg, "head") as Dictionary<object, object>;
            var gaze = Get(msg, "gaze") as Dictionary<object, object>;
            if (head == null || gaze == null) throw new WireException("fields 'head' and 'gaze' must be maps");
            Floats(Get(head, "q"), f.HeadQ, "head.q");
            Floats(Get(head, "p"), f.HeadP, "head.p");
            Floats(Get(gaze, "l"), f.GazeL, "gaze.l");
            Floats(Get(gaze, "r"), f.GazeR, "gaze.r");

            // Optional keys: read when well-typed, as wire.message_to_face does.
            object tp = Get(msg, "tp");
            if (IsNumber(tp)) f.Tp = AsDouble(tp);
            object frame = Get(msg, "frame");
            if (frame is long) f.Frame = (long)frame;
            return f;
        }
    }

    /// <summary>P/Invoke surface of libzmq (C API, stable since 4.0); only what a SUB socket needs.</summary>
    static class ZmqNative
    {
        // Linux: Debian/Ubuntu's runtime package (libzmq5) ships only the versioned name.
        // Unity (all platforms) and builds defining AVATAR_BRIDGE_ZMQ_PLAIN_NAME use "libzmq", which the
        // runtime resolves to libzmq.dll (Windows; rename e.g. libzmq-v142-mt-4_3_4.dll), libzmq.dylib
        // (macOS, e.g. Homebrew's zeromq) or libzmq.so (Linux).
#if UNITY_5_3_OR_NEWER || AVATAR_BRIDGE_ZMQ_PLAIN_NAME
        const string Lib = "libzmq";
#else
        const string Lib = "libzmq.so.5";
#endif
        public const int ZMQ_SUB = 2;
        public const int ZMQ_SUBSCRIBE = 6;
        public const int ZMQ_LINGER = 17;
        public const int ZMQ_RCVHWM = 24;
        public const int ZMQ_RCVTIMEO = 27;
        public const int ZMQ_DONTWAIT = 1;
        public const int MsgSize = 64;  // sizeof(zmq_msg_t): opaque, 64 bytes on every platform

        [DllImport(Lib)] public static extern IntPtr zmq_ctx_new();
        [DllImport(Lib)] public static extern int zmq_ctx_term(IntPtr context);
        [DllImport(Lib)] public static extern IntPtr zmq_socket(IntPtr context, int type);
        [DllImport(Lib)] public static extern int zmq_close(IntPtr socket);
        [DllImport(Lib)] public static extern int zmq_setsockopt(IntPtr socket, int option, byte[] value, UIntPtr size);
        [DllImport(Lib)] public static extern int zmq_setsockopt(IntPtr socket, int option, ref int value, UIntPtr size);
        [DllImport(Lib, CharSet = CharSet.Ansi)] public static extern int zmq_connect(IntPtr socket, string endpoint);
        [DllImport(Lib)] public static extern int zmq_msg_init(IntPtr msg);
        [DllImport(Lib)] public static extern int zmq_msg_recv(IntPtr msg, IntPtr socket, int flags);
        [DllImport(Lib)] public static extern IntPtr zmq_msg_data(IntPtr msg);
        [DllImport(Lib)] public static extern UIntPtr zmq_msg_size(IntPtr msg);
        [DllImport(Lib)] public static extern int zmq_msg_more(IntPtr msg);
        [DllImport(Lib)] public static extern int zmq_msg_close(IntPtr msg);
        [DllImport(Lib)] public static extern int zmq_errno();
        [DllImport(Lib)] public static extern IntPtr zmq_strerror(int errnum);

        public static string LastError()
        {
            int err = zmq_errno();
            return Marshal.PtrToStringAnsi(zmq_strerror(err)) + " (errno " + err + ")";
        }

        // EAGAIN is 11 on Linux and Windows' CRT, 35 on macOS; libzmq reports a receive timeout with it.
        public static bool IsAgain(int err) { return err == 11 || err == 35; }
        public const int EINTR = 4;
    }

    /// <summary>A ZeroMQ SUB socket on the bus's face topic. Malformed messages are counted and skipped.
    /// Not thread-safe: use it from one thread (AvatarBridgeFace reads on its own background thread).</summary>
    public sealed class Subscriber : IDisposable
    {
        IntPtr _ctx, _sock, _msg;
        int _timeoutMs = int.MinValue;

        public long Received { get; private set; }
        public long Malformed { get; private set; }
        public string LastError { get; private set; }
        /// <summary>Called with the reason for each skipped message; runs on the receiving thread.</summary>
        public Action<string> OnMalformed;

        public Subscriber(int rcvHwm = 10000)
        {
            _ctx = ZmqNative.zmq_ctx_new();
            if (_ctx == IntPtr.Zero) throw new InvalidOperationException("zmq_ctx_new failed: " + ZmqNative.LastError());
            _sock = ZmqNative.zmq_socket(_ctx, ZmqNative.ZMQ_SUB);
            if (_sock == IntPtr.Zero) throw new InvalidOperationException("zmq_socket failed: " + ZmqNative.LastError());
            _msg = Marshal.AllocHGlobal(ZmqNative.MsgSize);
            ZmqNative.zmq_msg_init(_msg);
            SetInt(ZmqNative.ZMQ_RCVHWM, rcvHwm);  // room for our own bursts (protocol.md, back-pressure)
            SetInt(ZmqNative.ZMQ_LINGER, 0);
            byte[] topic = Encoding.ASCII.GetBytes(Wire.TopicFace);
            Check(ZmqNative.zmq_setsockopt(_sock, ZmqNative.ZMQ_SUBSCRIBE, topic, (UIntPtr)topic.Length), "subscribe");
        }

        public void Connect(string endpoint)
        {
            Check(ZmqNative.zmq_connect(_sock, endpoint), "connect to " + endpoint);
        }

        /// <summary>Wait up to timeoutMs for the next valid face message; false on timeout.</summary>
        public bool Receive(out FaceFrame frame, int timeoutMs)
        {
            frame = null;
            var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
            var parts = new List<byte[]>(2);
            while (true)
            {
                int left = (int)Math.Max(0, (deadline - DateTime.UtcNow).TotalMilliseconds);
                if (!ReceiveMultipart(parts, left)) return false;
                // SUB filters by prefix: "faces" passes the "face" subscription but is another topic.
                if (parts.Count == 0 || Encoding.ASCII.GetString(parts[0]) != Wire.TopicFace) continue;
                if (parts.Count != 2)
                {
                    Reject("a face message must have 2 frames [topic, payload], got " + parts.Count);
                    continue;
                }
                try
                {
                    frame = Wire.DecodeFace(parts[1]);
                    Received++;
                    return true;
                }
                catch (WireException e) { Reject(e.Message); }
            }
        }

        // One whole multipart message into parts; false when nothing arrived within timeoutMs.
        bool ReceiveMultipart(List<byte[]> parts, int timeoutMs)
        {
            parts.Clear();
            if (timeoutMs != _timeoutMs) { SetInt(ZmqNative.ZMQ_RCVTIMEO, timeoutMs); _timeoutMs = timeoutMs; }
            while (true)
            {
                // ZeroMQ delivers multipart messages atomically: after the first frame the rest are queued.
                int flags = parts.Count == 0 ? 0 : ZmqNative.ZMQ_DONTWAIT;
                int n = ZmqNative.zmq_msg_recv(_msg, _sock, flags);
                if (n < 0)
                {
                    int err = ZmqNative.zmq_errno();
                    if (parts.Count == 0 && ZmqNative.IsAgain(err)) return false;
                    if (err == ZmqNative.EINTR) continue;
                    throw new InvalidOperationException("zmq_msg_recv failed: " + ZmqNative.LastError());
                }
                var data = new byte[(int)(ulong)ZmqNative.zmq_msg_size(_msg)];
                if (data.Length > 0) Marshal.Copy(ZmqNative.zmq_msg_data(_msg), data, 0, data.Length);
                parts.Add(data);
                if (ZmqNative.zmq_msg_more(_msg) == 0) return true;
            }
        }

        void Reject(string reason)
        {
            Malformed++;
            LastError = reason;
            var callback = OnMalformed;
            if (callback != null) callback(reason);
        }

        void SetInt(int option, int value)
        {
            Check(ZmqNative.zmq_setsockopt(_sock, option, ref value, (UIntPtr)sizeof(int)), "setsockopt " + option);
        }

        static void Check(int rc, string what)
        {
            if (rc != 0) throw new InvalidOperationException(what + " failed: " + ZmqNative.LastError());
        }

        public void Dispose()
        {
            if (_msg != IntPtr.Zero) { ZmqNative.zmq_msg_close(_msg); Marshal.FreeHGlobal(_msg); _msg = IntPtr.Zero; }
            if (_sock != IntPtr.Zero) { ZmqNative.zmq_close(_sock); _sock = IntPtr.Zero; }
            if (_ctx != IntPtr.Zero) { ZmqNative.zmq_ctx_term(_ctx); _ctx = IntPtr.Zero; }
        }
    }
}
