// Compile-only stand-in for the few UnityEngine types AvatarBridgeFace.cs uses, so the tests can
// type-check that component with mcs (-define:UNITY_5_3_OR_NEWER) where no Unity is installed.
// Signatures copied from the Unity scripting reference; never shipped, never run.
using System;

namespace UnityEngine
{
    public class Object { public string name; }
    public class Component : Object { }
    public class Behaviour : Component { public bool enabled; }
    public class MonoBehaviour : Behaviour { }
    public class Mesh : Object
    {
        public int blendShapeCount { get { return 0; } }
        public string GetBlendShapeName(int shapeIndex) { return ""; }
    }
    public class SkinnedMeshRenderer : Component
    {
        public Mesh sharedMesh;
        public void SetBlendShapeWeight(int index, float value) { }
    }
    public class Transform : Component
    {
        public Quaternion localRotation;
        public Vector3 localPosition;
    }
    public struct Quaternion
    {
        public float x, y, z, w;
        public Quaternion(float x, float y, float z, float w) { this.x = x; this.y = y; this.z = z; this.w = w; }
        public static Quaternion operator *(Quaternion a, Quaternion b) { return a; }
    }
    public struct Vector3
    {
        public float x, y, z;
        public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; }
        public static Vector3 operator +(Vector3 a, Vector3 b) { return a; }
        public static Vector3 operator -(Vector3 a, Vector3 b) { return a; }
    }
    public static class Debug
    {
        public static void Log(object message) { }
        public static void LogWarning(object message) { }
        public static void LogError(object message) { }
    }
    [AttributeUsage(AttributeTargets.Field)] public class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }
    [AttributeUsage(AttributeTargets.Field)] public class HeaderAttribute : Attribute { public HeaderAttribute(string header) { } }
}
