// A consumer in miniature (copied next to the generated sources by
// scripts/check_protos.sh): the service descriptor of the generated gRPC stub,
// and an AnalysisEvent round-tripped through bytes as a Kafka consumer would.
import io.understanding.v1.Analysis;
import io.understanding.v1.AnalysisEvent;
import io.understanding.v1.UnderstandingGrpc;

public final class Smoke {
  public static void main(String[] args) throws Exception {
    var methods = UnderstandingGrpc.getServiceDescriptor().getMethods();
    if (methods.stream().noneMatch(m -> m.getFullMethodName().equals("understanding.v1.Understanding/AnalyzeText"))) {
      throw new IllegalStateException("no AnalyzeText in " + methods);
    }
    byte[] value = AnalysisEvent.newBuilder()
        .setEventId("e-1")
        .setAnalysis(Analysis.newBuilder().setMediaId("m-1"))
        .build()
        .toByteArray();
    AnalysisEvent event = AnalysisEvent.parseFrom(value);
    if (!event.getAnalysis().getMediaId().equals("m-1")) {
      throw new IllegalStateException("round trip failed");
    }
  }
}
