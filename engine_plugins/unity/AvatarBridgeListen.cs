// AvatarBridgeListen.cs — console twin of engine_plugins/cpp/avatar_bridge_listen: one JSON line per
// face message, so the tests can check the C# reader against the live daemon.
//   mcs -out:AvatarBridgeListen.exe AvatarBridgeClient.cs AvatarBridgeListen.cs AvatarBridgeFace.cs
//   mono AvatarBridgeListen.exe [--bus tcp://127.0.0.1:5570] [--count N] [--timeout-ms MS]
//   mono AvatarBridgeListen.exe --convert   # stdin "qx qy qz qw px py pz" -> Unity pose JSON lines
//   mono AvatarBridgeListen.exe --names     # the ARKit name table as a JSON list
// Stderr: {"malformed": reason} per skipped message, then {"received": n, "malformed": m} at exit.
// Exit status: 0 after --count messages, 2 when --timeout-ms passes with no message, 1 on bad arguments.
#if !UNITY_5_3_OR_NEWER
using System;
using System.Globalization;
using System.Text;

namespace AvatarBridge
{
    static class AvatarBridgeListen
    {
        static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

        // "G9" round-trips a float32 and "G17" a double, so the test can compare bit for bit.
        static string Num(float x) { return float.IsNaN(x) || float.IsInfinity(x) ? "null" : x.ToString("G9", Inv); }
        static string Num(double x) { return double.IsNaN(x) || double.IsInfinity(x) ? "null" : x.ToString("G17", Inv); }

        static string List(float[] a)
        {
            var sb = new StringBuilder("[");
            for (int i = 0; i < a.Length; i++) sb.Append(i > 0 ? "," : "").Append(Num(a[i]));
            return sb.Append("]").ToString();
        }

        static string List(params double[] a)
        {
            var sb = new StringBuilder("[");
            for (int i = 0; i < a.Length; i++) sb.Append(i > 0 ? "," : "").Append(Num(a[i]));
            return sb.Append("]").ToString();
        }

        static string JsonString(string s)
        {
            var sb = new StringBuilder("\"");
            foreach (char c in s)
            {
                if (c == '"' || c == '\\') sb.Append('\\').Append(c);
                else if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4"));
                else sb.Append(c);
            }
            return sb.Append('"').ToString();
        }

        static string FrameJson(FaceFrame f)
        {
            return "{\"seq\":" + f.Seq.ToString(Inv) + ",\"t\":" + Num(f.T) + ",\"bs\":" + List(f.Bs) +
                   ",\"head\":{\"q\":" + List(f.HeadQ) + ",\"p\":" + List(f.HeadP) + "},\"gaze\":{\"l\":" +
                   List(f.GazeL) + ",\"r\":" + List(f.GazeR) + "},\"conf\":" + Num(f.Conf) +
                   ",\"present\":" + (f.Present ? "true" : "false") + "}";
        }

        static int Convert()
        {
            string line;
            while ((line = Console.ReadLine()) != null)
            {
                string[] tok = line.Split((char[])null, StringSplitOptions.RemoveEmptyEntries);
                var v = new double[7];
                if (tok.Length != 7)
                {
                    Console.Error.WriteLine("expected 7 numbers \"qx qy qz qw px py pz\" per line, got: " + line);
                    return 1;
                }
                for (int i = 0; i < 7; i++) v[i] = double.Parse(tok[i], NumberStyles.Float, Inv);
                UnityPose u = Conventions.ToUnity(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
                Console.WriteLine("{\"unity\":{\"q\":" + List(u.Qx, u.Qy, u.Qz, u.Qw) + ",\"p\":" + List(u.Px, u.Py, u.Pz) + "}}");
            }
            return 0;
        }

        static int Main(string[] args)
        {
            // One line per message, flushed, so a reader on the pipe sees each as it arrives.
            Console.SetOut(new System.IO.StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true });
            string bus = "tcp://127.0.0.1:5570";
            long count = 0;      // 0: until interrupted
            int timeoutMs = 0;   // 0: wait forever
            for (int i = 0; i < args.Length; i++)
            {
                bool hasValue = i + 1 < args.Length;
                if (args[i] == "--convert") return Convert();
                if (args[i] == "--names")
                {
                    var names = new string[ArkitNames.Count];
                    for (int k = 0; k < names.Length; k++) names[k] = JsonString(ArkitNames.All[k]);
                    Console.WriteLine("{\"names\":[" + string.Join(",", names) + "],\"hash\":" + ArkitNames.ComputeHash() + "}");
                    return 0;
                }
                if (args[i] == "--bus" && hasValue) bus = args[++i];
                else if (args[i] == "--count" && hasValue) count = long.Parse(args[++i], Inv);
                else if (args[i] == "--timeout-ms" && hasValue) timeoutMs = int.Parse(args[++i], Inv);
                else
                {
                    Console.Error.WriteLine("unknown argument " + args[i] +
                        "; usage: AvatarBridgeListen.exe [--bus ENDPOINT] [--count N] [--timeout-ms MS] | --convert | --names");
                    return 1;
                }
            }

            int status = 0;
            using (var sub = new Subscriber())
            {
                sub.OnMalformed = reason => Console.Error.WriteLine("{\"malformed\":" + JsonString(reason) + "}");
                try { sub.Connect(bus); }
                catch (InvalidOperationException e)
                {
                    Console.Error.WriteLine("cannot connect: " + e.Message + ". Pass --bus tcp://HOST:PORT");
                    return 1;
                }
                FaceFrame frame;
                while (count == 0 || sub.Received < count)
                {
                    if (!sub.Receive(out frame, timeoutMs > 0 ? timeoutMs : 1000))
                    {
                        if (timeoutMs > 0) { status = 2; break; }
                        continue;
                    }
                    Console.WriteLine(FrameJson(frame));
                }
                Console.Error.WriteLine("{\"received\":" + sub.Received + ",\"malformed\":" + sub.Malformed + "}");
            }
            return status;
        }
    }
}
#endif
